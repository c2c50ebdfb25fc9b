"""The parameterization model: exact exponents, conventions, symmetry, presets."""

from fractions import Fraction as F

import pytest

from muptheory.errors import InvalidInputError, MuptheoryError
from muptheory.parameterization import (
    PRESET_NAMES,
    LayerExponents,
    Parameterization,
    parse_exponent,
    preset,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1/2", F(1, 2)),
        ("-1", F(-1)),
        (" 3/4 ", F(3, 4)),
        ("0.25", F(1, 4)),
        (0.5, F(1, 2)),
        ("\u22121/2", F(-1, 2)),  # the typographic minus sign
        ("+1", F(1)),
        ("2e-1", F(1, 5)),
    ],
)
def test_parse_exponent_is_exact(text, value):
    assert parse_exponent(text) == value


@pytest.mark.parametrize(
    "bad",
    [
        "1/0",
        "abc",
        "",
        "1/2/3",
        "1/-2",
        "1_000",  # int() would read these two
        "\u0661",  # ARABIC-INDIC DIGIT ONE
        "0x10",
        "nan",
        float("nan"),
        float("inf"),
        None,
    ],
)
def test_parse_exponent_rejects_garbage_with_project_error(bad):
    with pytest.raises(MuptheoryError):
        parse_exponent(bad)


def test_mup_in_both_conventions_matches_tensor_programs_iv():
    mup = preset("mup")
    assert mup.convention == "fan_in"
    assert mup.b.as_tuple() == (F(1, 2), F(1, 2), F(1))
    assert mup.c.as_tuple() == (F(-1), F(0), F(1))
    wide = mup.to_width_only()
    assert wide.b.as_tuple() == (F(0), F(1, 2), F(1))
    assert wide.c.as_tuple() == (F(-1), F(0), F(1))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_convention_round_trip_is_exact(name):
    p = preset(name)
    assert p.to_width_only().to_fan_in() == p
    assert p.to("width_only").to("width_only") == p.to_width_only()


def test_symmetry_removes_multipliers_of_mean_field_into_mup():
    # (a, b, c) -> (a + t, b - t, c - 2t) with t = -a gives a = 0; mean-field then is muP
    mf = preset("mean-field").without_multipliers()
    mup = preset("mup")
    assert mf.a.as_tuple() == (0, 0, 0)
    assert mf.b == mup.b
    assert mf.c == mup.c


def test_shift_then_unshift_is_identity():
    p = preset("sp")
    assert p.shifted(F(1, 3)).shifted(F(-1, 3)).b == p.b
    assert p.shifted(F(1, 3)).c.as_tuple() == (F(-2, 3), F(-2, 3), F(-2, 3))


def test_init_std_reads_fan_in_convention():
    mup = preset("mup")
    # hidden: sigma * M^{-1/2}; last: sigma * M^{-1}; first: sigma / sqrt(d)
    assert mup.init_std("hidden", width=400, fan_in=400) == pytest.approx(1 / 20)
    assert mup.init_std("last", width=400, fan_in=400) == pytest.approx(1 / 400)
    assert mup.init_std("first", width=400, fan_in=64) == pytest.approx(1 / 8)
    assert mup.lr_scale("first", width=400) == pytest.approx(400.0)


@pytest.mark.parametrize("width", [0, -3])
def test_non_positive_width_is_rejected(width):
    with pytest.raises(InvalidInputError, match="width"):
        preset("mup").lr_scale("hidden", width=width)


def test_unknown_preset_and_convention_name_the_choices():
    with pytest.raises(InvalidInputError, match="mup"):
        preset("mupp")
    with pytest.raises(InvalidInputError, match="fan_in"):
        Parameterization(b=(0, 0, 0), c=(0, 0, 0), convention="fanin")
    with pytest.raises(InvalidInputError, match="3 exponents"):
        LayerExponents.of(["1", "2"])


def test_json_round_trip_keeps_exact_strings():
    p = preset("mup").to_width_only()
    data = p.to_json()
    assert data["b"] == {"first": "0", "hidden": "1/2", "last": "1"}
    assert Parameterization.from_json(data) == p
