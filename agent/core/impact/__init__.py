"""agent/core/impact."""
