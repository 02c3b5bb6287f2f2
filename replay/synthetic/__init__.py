"""replay/synthetic."""
