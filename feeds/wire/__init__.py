"""feeds/wire."""
