"""agent/live."""
