"""Thin entry points that call a framework's own training API with arguments from the job spec."""
