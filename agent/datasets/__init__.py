"""Dataset preparation on the instance."""
