"""Streaming MPC execution agent: the decision core and the service around it."""

__version__ = "0.1.0"
