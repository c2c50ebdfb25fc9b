"""K-FAC and Shampoo muP, derived by the calculus, against Ishikawa & Karakida (2024).

Reference values (fan-in convention) from the authors' public code: K-FAC
b = (1/2, 1/2, 1), c = (0, 0, 0) with rho_A ~ (1, M, M) and rho_G ~ (1/M, 1/M, 1);
Shampoo b = (1/2, 1/2, 1), c = (-1/2, 0, 1/2).
"""

import json
from fractions import Fraction
from fractions import Fraction as F

import pytest

from muptheory.errors import InvalidInputError
from muptheory.methods import MethodConfig, config_from_options
from muptheory.parameterization import Parameterization
from muptheory.symbolic.engine import classify, derive_mup


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


# -- damping as a method option, and classify with it --------------------------------
#
# K-FAC's hidden-layer step, per coordinate (width-only b = (0, 1/2, 1), c = 0):
#   Delta W h_1 = -eta delta_2 |h_1|^2 / ((|delta_2|^2 + rho_G) (|h_1|^2 + rho_A)),
# with delta_2 = W_L^T e of size M^(-b_L) per coordinate, |delta_2|^2 ~ M^(1 - 2 b_L)
# and |h_1|^2 ~ M. Each (eigenvalue + damping) is sized by whichever term dominates.


def _fan_in(b, c) -> Parameterization:
    return Parameterization(b=tuple(F(v) for v in b), c=tuple(F(v) for v in c))


KFAC_MUP = _fan_in(("1/2", "1/2", "1"), (0, 0, 0))
SHAMPOO_MUP = _fan_in(("1/2", "1/2", "1"), ("-1/2", 0, "1/2"))


def test_kfac_mup_with_the_derived_damping_is_feature_learning():
    result = classify(MethodConfig.create("bp", optimizer="kfac"), KFAC_MUP)
    assert result.stable and result.regime == "feature_learning"
    assert any(
        line.startswith("damping at the derived muP exponents")
        for line in result.reasons
    )
    # every eigenvalue / damping ratio is Theta(1) at the derived damping
    assert all(v == 0 for k, v in result.exponents.items() if "over_damping" in k)


def test_shampoo_mup_with_the_derived_damping_is_feature_learning():
    result = classify(MethodConfig.create("bp", optimizer="shampoo"), SHAMPOO_MUP)
    assert result.stable and result.regime == "feature_learning"
    assert "rho ~ M^(-1, 0, 1) (derived muP)" in result.reasons[-1]


def test_kfac_overdamped_hidden_input_factor_keeps_features_but_not_its_update():
    # rho_A = M^3 on the hidden layer against |h_1|^2 ~ M: the ratio is M^(1-3) and
    # the damping dominates, so the hidden step is the muP one times M/M^3:
    # Delta W_2 h_1 ~ M^(-2). The first layer's step keeps its derived damping and
    # moves h_1 by Theta(1); a fresh W_2 carries that to h_2 (CLT: M^(1/2) terms of
    # M^(-1/2)), so features still move Theta(1): stable feature learning (r = 0,
    # set by the first layer), with the hidden layer's own update vanishing.
    config = MethodConfig.create("bp", optimizer="kfac", damping_a=["0", "3", "1"])
    result = classify(config, KFAC_MUP)
    assert result.stable and result.regime == "feature_learning"
    assert result.exponents["A_eigenvalue_over_damping[hidden]"] == -2
    assert result.exponents["update[hidden]"] == -2
    assert result.exponents["update[first]"] == 0
    assert any("damping at the given exponents" in r for r in result.reasons)
    assert any(
        "A_eigenvalue_over_damping[hidden] ~ M^(-2)" in r for r in result.reasons
    )


def test_kfac_with_standard_init_is_in_the_kernel_regime():
    # b_L = 1/2 (fan-in) makes delta_2 = W_L^T e of size M^(-1/2), |delta|^2 ~ 1,
    # which swamps the derived rho_G ~ 1/M on the first and hidden layers (ratio M).
    # Each of those steps is then delta |h|^2 / (|delta|^2 |h|^2) ~ M^(-1/2): features
    # move like M^(-1/2) (r = 1/2), while W_L (entries M^(-1/2)) meets the change
    # of h_2, built from W_L^T e, as an aligned sum M * M^(-1/2) * M^(-1/2) = 1:
    # the hidden layers still move the output by Theta(1), the kernel regime.
    config = MethodConfig.create("bp", optimizer="kfac")
    result = classify(config, _fan_in(("1/2", "1/2", "1/2"), (0, 0, 0)))
    assert result.stable and result.regime == "kernel"
    assert result.r == F(1, 2)
    assert result.exponents["G_eigenvalue_over_damping[first]"] == 1
    assert result.exponents["G_eigenvalue_over_damping[hidden]"] == 1


def test_damping_options_round_trip_through_options():
    for optimizer, options in (
        ("kfac", {"damping_a": ["0", "3", "1"], "damping_g": [-1, "-1/2", 0]}),
        ("kfac", {"damping0": 0.5}),
        ("shampoo", {"damping": ["-1", "0", "1"]}),
        ("shampoo", {}),
    ):
        config = MethodConfig.create("bp", optimizer=optimizer, **options)
        written = config.options()
        assert json.loads(json.dumps(written)) == written
        assert config_from_options("bp", written) == config
    given = MethodConfig.create("bp", optimizer="kfac", damping_g=["-1", "1/2", "0"])
    assert given.damping_g == (F(-1), F(1, 2), F(0))
    assert given.options()["damping_g"] == ["-1", "1/2", "0"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"optimizer": "kfac", "damping_a": ["0", "1"]}, "three exponents"),
        ({"optimizer": "kfac", "damping_g": ["0", "1", "1", "1"]}, "got 4"),
        ({"optimizer": "kfac", "damping_a": "0 1 1"}, "three exponents"),
        ({"optimizer": "kfac", "damping_a": ["0", "one", "1"]}, "not a rational"),
        ({"optimizer": "sgd", "damping_a": ["0", "1", "1"]}, "applies only with"),
        ({"damping": ["0", "1", "1"]}, "--damping applies only with --optimizer"),
        ({"optimizer": "kfac", "damping": ["0", "1", "1"]}, "shampoo"),
        ({"optimizer": "shampoo", "damping_g": ["0", "1", "1"]}, "kfac"),
        ({"optimizer": "kfac", "damping0": 0.0}, "positive"),
    ],
)
def test_bad_damping_is_a_project_error(options, message):
    with pytest.raises(InvalidInputError, match=message):
        MethodConfig.create("bp", **options)


def test_exponents_rejects_given_damping_it_would_derive():
    for optimizer, options in (
        ("kfac", {"damping_g": ["-1", "-1", "0"]}),
        ("shampoo", {"damping": ["-1", "0", "1"]}),
    ):
        config = MethodConfig.create("bp", optimizer=optimizer, **options)
        with pytest.raises(InvalidInputError, match="what the derivation finds"):
            derive_mup(config)
