"""K-FAC and Shampoo muP, derived by the calculus, against Ishikawa & Karakida (2024).

Reference values (fan-in convention) from the authors' public code: K-FAC
b = (1/2, 1/2, 1), c = (0, 0, 0) with rho_A ~ (1, M, M) and rho_G ~ (1/M, 1/M, 1);
Shampoo b = (1/2, 1/2, 1), c = (-1/2, 0, 1/2).
"""

from fractions import Fraction

import pytest

from muptheory.methods import MethodConfig
from muptheory.symbolic.engine import derive_mup


def _fractions(*values: str) -> tuple[Fraction, ...]:
    return tuple(Fraction(v) for v in values)


@pytest.fixture(scope="module")
def kfac():
    return derive_mup(MethodConfig.create("bp", optimizer="kfac"))


@pytest.fixture(scope="module")
def shampoo():
    return derive_mup(MethodConfig.create("bp", optimizer="shampoo"))


def test_kfac_mup_matches_ishikawa_karakida(kfac):
    p = kfac.parameterization
    assert p.convention == "fan_in"
    assert p.b.as_tuple() == _fractions("1/2", "1/2", "1")
    assert p.c.as_tuple() == _fractions("0", "0", "0")


def test_kfac_damping_scales_like_the_factor_eigenvalues(kfac):
    assert kfac.extra == {
        "rho_A_first": Fraction(0),
        "rho_A_hidden": Fraction(1),
        "rho_A_last": Fraction(1),
        "rho_G_first": Fraction(-1),
        "rho_G_hidden": Fraction(-1),
        "rho_G_last": Fraction(0),
    }
    assert kfac.to_json()["damping"]["rho_G_hidden"] == "-1"


def test_shampoo_mup_matches_ishikawa_karakida(shampoo):
    p = shampoo.parameterization
    assert p.b.as_tuple() == _fractions("1/2", "1/2", "1")
    assert p.c.as_tuple() == _fractions("-1/2", "0", "1/2")


def test_shampoo_damping_scales_like_the_gradient_eigenvalue(shampoo):
    # |delta|^2 |h|^2: 1/M on the first layer, Theta(1) hidden, M on the last
    assert shampoo.extra == {
        "rho_first": Fraction(-1),
        "rho_hidden": Fraction(0),
        "rho_last": Fraction(1),
    }
