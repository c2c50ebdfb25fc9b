"""The exponent engine: derived muP rows, classification, CLI contract.

Expected values are the rows of THEORY section 5 and Tensor Programs IV's formulas
(stated in the test), never output pasted from the engine.
"""

import json
import subprocess
import sys
from fractions import Fraction as F

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muptheory.errors import InvalidInputError, MuptheoryError
from muptheory.methods import MethodConfig
from muptheory.parameterization import Parameterization, preset
from muptheory.symbolic import classify, coord_exponents, derive_mup

HALF = F(1, 2)


def mup_of(method, **options):
    return derive_mup(MethodConfig.create(method, **options)).parameterization


def rows(p):
    return p.b.as_tuple(), p.c.as_tuple()


# -- derived muP rows ----------------------------------------------------------------


def test_sgd_mup_in_both_conventions_and_round_trip():
    p = mup_of("bp")
    assert rows(p) == ((HALF, HALF, F(1)), (F(-1), F(0), F(1)))
    wide = p.to_width_only()
    assert rows(wide) == ((F(0), HALF, F(1)), (F(-1), F(0), F(1)))
    assert wide.to_fan_in() == p


def test_adam_mup_has_unit_rates_on_fan_in():
    # Adam: entries of the update ~ learning rate, so c = (0, 1, 1)
    assert rows(mup_of("bp", optimizer="adam")) == (
        (HALF, HALF, F(1)),
        (F(0), F(1), F(1)),
    )


def test_gnt_mup_with_lambda_scaled_like_jjt_and_at_zero():
    expected = ((HALF, HALF, F(1)), (F(0), F(1), F(1)))
    assert rows(mup_of("gnt")) == expected
    assert rows(mup_of("gnt", lambda_zero=True)) == expected


def test_gnt_with_large_damping_gives_back_scaled_gradient_rates():
    # lambda = Theta(1) dominates J J^T ~ 1/M: the target is a scaled gradient
    assert rows(mup_of("gnt", lambda_bar="0")) == rows(mup_of("bp"))


def test_pc_with_gamma_bar_zero_is_sgd_mup():
    assert rows(mup_of("pc", gamma_bar_last="0")) == rows(mup_of("bp"))


def test_pc_with_gamma_bar_minus_one_is_gnt_mup():
    assert rows(mup_of("pc", gamma_bar_last="-1")) == rows(mup_of("gnt"))


@pytest.mark.parametrize("g", [F(-1, 2), F(-1, 3), F(-3, 4)])
def test_pc_rows_in_between_follow_theory(g):
    # THEORY section 5: c = (-1 - g, -g, 1), b as SGD's muP
    assert rows(mup_of("pc", gamma_bar_last=g)) == (
        (HALF, HALF, F(1)),
        (-1 - g, -g, F(1)),
    )


@pytest.mark.parametrize("g", [F(0), F(-1, 2), F(-1)])
def test_pc_last_layer_gamma_convention_moves_only_c_last(g):
    plain = mup_of("pc", gamma_bar_last=g)
    literal = mup_of("pc", gamma_bar_last=g, last_layer_gamma=True)
    assert literal.b == plain.b
    assert literal.c.first == plain.c.first and literal.c.hidden == plain.c.hidden
    assert literal.c.last == 1 - g


@pytest.mark.parametrize("g", ["-2", "-3/2", "1/2", "1"])
def test_pc_outside_supported_range_is_rejected_with_reason(g):
    with pytest.raises(InvalidInputError, match="gamma_bar_last"):
        derive_mup(MethodConfig.create("pc", gamma_bar_last=g))


@pytest.mark.parametrize("method", ["tp", "dtp"])
def test_tp_mup_keeps_standard_last_layer(method):
    d = derive_mup(MethodConfig.create(method))
    assert rows(d.parameterization) == ((HALF, HALF, HALF), (F(0), F(1), F(1)))
    assert any("kernel regime: none" in note for note in d.notes)


# -- classification against Tensor Programs IV ---------------------------------------

SGD = MethodConfig.create("bp")


def test_sp_with_constant_lr_is_unstable():
    result = classify(SGD, preset("sp"))
    assert not result.stable and result.regime == "unstable"
    assert result.r == -1  # r = min(b_L, c_L) + min(c_1, c_h - 1) = 0 - 1
    assert any(f.quantity == "output_change" for f in result.failures)


def test_sp_with_lr_over_width_is_kernel_with_r_half():
    result = classify(SGD, preset("sp-lr1/m"))
    assert result.stable and result.regime == "kernel" and result.r == HALF


def test_ntk_like_row_is_kernel():
    result = classify(SGD, preset("ntk"))
    assert result.regime == "kernel" and result.r == HALF


def test_mup_is_feature_learning_with_r_zero():
    result = classify(SGD, preset("mup"))
    assert result.regime == "feature_learning" and result.r == 0


def test_mean_field_multipliers_reduce_to_mup():
    assert classify(SGD, preset("mean-field")).regime == "feature_learning"


def tp4_r(b_last, c1, ch, cl):
    """Tensor Programs IV's r with a = 0, width-only b, per-layer c."""
    return min(b_last, cl) + min(c1, ch - 1)


exponents = st.fractions(min_value=-2, max_value=3, max_denominator=4)


@settings(max_examples=160, deadline=None)
@given(
    # the stable initialization (width-only b_1 = 0, b_l = 1/2) most of the time
    b1=st.sampled_from([F(0), F(0), F(0), -HALF, HALF, F(1)]),
    bh=st.sampled_from([HALF, HALF, HALF, F(0), F(1), F(3, 4)]),
    b_last=st.fractions(min_value=-HALF, max_value=2, max_denominator=4),
    c1=exponents,
    ch=exponents,
    cl=exponents,
)
def test_random_bp_parameterizations_agree_with_r_formula(b1, bh, b_last, c1, ch, cl):
    p = Parameterization(b=(b1, bh, b_last), c=(c1, ch, cl), convention="width_only")
    result = classify(SGD, p)
    r = tp4_r(b_last, c1, ch, cl)
    # Theorem 3.3 with a = 0: b_1 = 0, b_l = 1/2, b_L >= 1/2 at init, then r >= 0,
    # c_L >= 1 and b_L + r >= 1
    init = b1 == 0 and bh == HALF and b_last >= HALF
    stable = init and r >= 0 and cl >= 1 and b_last + r >= 1
    assert result.stable == stable
    if not stable:
        return  # past a blow-up, sizes compound beyond TP IV's first-order r
    assert result.r == r
    nontrivial = b_last + r == 1 or cl == 1
    if not nontrivial:
        assert result.regime == "trivial"
    elif r == 0:
        assert result.regime == "feature_learning"
    elif b_last + r == 1:
        assert result.regime == "kernel"  # the hidden layers move the output
    else:
        # only the readout learns: TP IV's NNGP kernel, reported here as trivial
        assert result.regime == "trivial" and result.readout_only


def test_initialization_off_its_stable_b_is_unstable_whatever_the_rates():
    # fan-in b_l = 0: hidden W entries Theta(1), u_l a CLT sum of M Theta(1) terms
    hidden = classify(SGD, Parameterization(b=(HALF, 0, 1), c=(-1, 0, 1)))
    assert not hidden.stable and hidden.regime == "unstable"
    assert hidden.exponents["preactivation[hidden]"] == HALF
    # the step is sized from a stable initialization only: none of it is reported
    assert set(hidden.exponents) == {
        "preactivation[first]",
        "preactivation[hidden]",
        "output[init]",
    }
    assert any("training step is not sized" in r for r in hidden.reasons)
    # fan-in b_1 = 2: u_1 = W_1 x ~ M^(1/2 - 2), and h_1 carries it upwards
    first = classify(SGD, Parameterization(b=(2, HALF, 1), c=(-1, 0, 1)))
    assert first.exponents["preactivation[first]"] == F(-3, 2)
    assert first.exponents["preactivation[hidden]"] == F(-3, 2)
    assert not first.stable
    assert any("preactivation[first] vanishes" in r for r in first.reasons)
    text = "\n".join(classify(SGD, preset("sp"), explain=True).explanation)
    assert "Initialization at the given b" in text
    # coord-check predictions stop at the sizes at init
    pred = coord_exponents(SGD, Parameterization(b=(HALF, 0, 1), c=(-1, 0, 1)), depth=3)
    assert pred == {("h", 1): 0, ("h", 2): HALF, ("f", 3): 0}


def test_no_stable_nontrivial_tp_parameterization_is_kernel():
    tp = MethodConfig.create("tp")
    grid = [F(k, 2) for k in range(-2, 5)]
    seen_feature_learning = False
    for b_last in (HALF, F(3, 4), F(1)):
        for c1 in grid:
            for ch in grid:
                for cl in grid:
                    p = Parameterization(b=(HALF, HALF, b_last), c=(c1, ch, cl))
                    regime = classify(tp, p).regime
                    assert regime != "kernel", p
                    seen_feature_learning |= regime == "feature_learning"
    assert seen_feature_learning


def test_coord_exponents_of_sgd_mup_are_all_theta_one():
    pred = coord_exponents(SGD, preset("mup"), depth=4)
    assert pred[("f", 4)] == -HALF  # output at init ~ M^(1/2 - b_L)
    assert all(v == 0 for k, v in pred.items() if k[0] != "f")


def test_coord_exponents_of_dtp_with_b_last_one_shrink_features_at_step_one():
    p = Parameterization(b=(HALF, HALF, 1), c=(0, 1, 1))
    pred = coord_exponents(MethodConfig.create("dtp"), p, depth=3, step=1)
    assert pred[("delta_h", 2)] == -HALF


def test_bad_method_option_is_a_project_error():
    with pytest.raises(MuptheoryError):
        MethodConfig.create("bp", gamma_bar_last="-1")
    with pytest.raises(MuptheoryError):
        MethodConfig.create("sgd")


# -- CLI ------------------------------------------------------------------------------


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "muptheory", *args], capture_output=True, text=True
    )


def test_cli_exponents_pc_json_as_in_the_issue():
    out = cli("exponents", "pc", "--gamma-bar-last", "-1", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["method"] == "pc" and data["convention"] == "fan_in"
    assert data["b"] == {"first": "1/2", "hidden": "1/2", "last": "1"}
    assert data["c"] == {"first": "0", "hidden": "1", "last": "1"}


def test_cli_classify_bp_json_as_in_the_issue():
    out = cli(
        "classify", "bp", "--b", "1/2", "1/2", "1/2", "--c", "0", "1", "1", "--json"
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["stable"] is True and data["regime"] == "kernel" and data["r"] == "1/2"


def test_cli_reads_negative_fractions_as_values():
    out = cli("exponents", "pc", "--gamma-bar-last", "-1/2", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["c"] == {
        "first": "-1/2",
        "hidden": "1/2",
        "last": "1",
    }


def test_cli_markdown_latex_and_explain():
    md = cli("exponents", "bp", "--markdown")
    assert md.returncode == 0 and "| b_1 |" in md.stdout
    tex = cli("exponents", "bp", "--latex", "--convention", "width_only")
    assert "\\begin{tabular}" in tex.stdout
    explain = cli("exponents", "bp", "--explain")
    assert "[clt]" in explain.stdout and "[lln]" in explain.stdout
    assert "pin b_first = 0" in explain.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("exponents", "nope"),
        ("classify", "bp", "--b", "1/0", "1/2", "1", "--c", "0", "0", "0"),
        ("classify", "bp", "--b", "abc", "1/2", "1", "--c", "0", "0", "0"),
        ("classify", "bp", "--b", "1/2", "1/2", "--c", "0", "0", "0"),
        ("classify", "bp", "--c", "0", "0", "0"),
        ("exponents", "bp", "--gamma-bar-last", "-1"),
        ("exponents", "pc", "--gamma-bar-last", "-2"),
        ("exponents", "gnt", "--lambda-bar", "1e400"),
        ("exponents", "pc", "--inference", "iterative", "--inference-rate", "1e400"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args):
    out = cli(*args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr
