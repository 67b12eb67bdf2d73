"""streamlab: a raw-socket protocol lab for streaming HTTP."""

__version__ = "0.1.0"
