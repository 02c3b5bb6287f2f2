"""agent/core/mpc."""
