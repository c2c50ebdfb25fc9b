"""Sub-commands of the limits engine (filled in by its issue)."""

from __future__ import annotations


def register(subparsers) -> None:
    """Add this module's sub-commands to the parser."""
