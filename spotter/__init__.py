"""Spotter's shared core: job spec and status, bus events, catalog, jobs store, configuration."""
