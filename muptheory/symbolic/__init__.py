"""The symbolic engine: scaling exponents of learning rules, derived in exact algebra.

Public API:

- ``derive_mup(config)``: the method's muP (``Derivation``, fan-in convention);
- ``classify(config, param)``: stability and regime of a parameterization;
- ``coord_exponents(config, param, depth=L)``: predicted coord-check exponents;
- ``mup_table(configs)``: the paper-style table of several methods.

Example:
    >>> from muptheory.methods import MethodConfig
    >>> derive_mup(MethodConfig.create("bp")).parameterization.c.to_json()
    {'first': '-1', 'hidden': '0', 'last': '1'}
"""

from muptheory.symbolic.engine import (
    REGIMES,
    Classification,
    Derivation,
    classify,
    coord_exponents,
    derive_mup,
)

__all__ = [
    "REGIMES",
    "Classification",
    "Derivation",
    "classify",
    "coord_exponents",
    "derive_mup",
]
