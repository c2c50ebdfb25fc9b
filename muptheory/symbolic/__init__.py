"""symbolic engine."""
