"""agent/core/forecast."""
