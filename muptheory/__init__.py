"""muptheory: infinite-width theory calculator for local learning rules.

The package has three engines and the glue around them:

- ``muptheory.symbolic``: derives abc-parameterization exponents (muP) of BP, GNT,
  PC and TP/DTP from their update rules and classifies parameterizations;
- ``muptheory.limits``: exact infinite-width limits of deep linear networks;
- ``muptheory.simulate``: a JAX finite-width simulator with coord checks.

Importing the package is cheap; engines are imported on first use.
"""

from muptheory.errors import MuptheoryError

__all__ = ["MuptheoryError", "__version__"]
__version__ = "0.1.0"
