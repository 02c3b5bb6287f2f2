"""feeds/files."""
