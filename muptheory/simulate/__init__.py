"""simulate engine."""
