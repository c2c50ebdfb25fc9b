"""limits engine."""
