"""Sub-commands of the exponent engine: ``exponents``, ``classify``, ``table``."""

from __future__ import annotations

from muptheory.cli.common import add_subcommand


def register(subparsers) -> None:
    add_subcommand(subparsers, "exponents", help="derive a method's muP (placeholder)")
