"""TP and DTP with feedback weights trained by a reconstruction loss.

Expected exponents are derived by hand here, not copied from the engine. Width-only
sizes, L = 3 (first, hidden, last); V_L is M x C, V_l (hidden) is M x M; fan-in b_fb
means Var V = M^(1 - 2 b_fb) / fan_in, so width-only b_fb(top) = b_fb - 1/2.

1. Feedback init (V(0) x Theta(1) for Theta(1) x): top, a sum over C, M^(1/2 - b_fb);
   hidden, CLT over M, M^(1/2) M^(-b_fb). Both pin b_fb = 1/2 (fan-in).
2. Reconstruction step dV s = eta M^(-c_fb) r (s . s), r = Theta(1) (target u + xi):
   hidden, s = Theta(1), s . s an LLN sum over M: M^(1 - c_fb) -> c_fb(hidden) = 1;
   top, s = W_L phi(u + xi) ~ M^(1/2 - b_L), s . s a sum over C:
   M^(-c_fb + 1 - 2 b_L) -> c_fb(top) = 1 - 2 b_L.
3. Target sent down by the top map: dV_L t_L with t_L = f - e = Theta(1) (it holds
   y): M^(-c_fb(top)) M^(1/2 - b_L) = M^(b_L - 1/2) must stay O(1), so b_L <= 1/2;
   the output at init, M^(1/2 - b_L), needs b_L >= 1/2. So b_L = 1/2 (fan-in 1/2, as
   with ridge feedback; here pinned by the feedback, not by a choice), c_fb(top) = 0.
4. Forward: signals are Theta(1) (TP: u_l - V t_l holds u_l; DTP: V_L e and V_l(0)
   applied to it), so dW_L h = M^(1 - c_L), dW_l h = M^(1 - c_l) (LLN), dW_1 x =
   M^(-c_1): c = (0, 1, 1). W_L dh is CLT (targets come from V and the batch,
   independent of W_L), M^(1/2 - b_L) dh = Theta(1).
5. One shared c_fb: hidden wants 1, top wants 0. c_fb = 0 blows the hidden step up
   like M; c_fb = 1 is stable with the top map's step vanishing like M^(-1).
"""

from fractions import Fraction as F

import pytest

from muptheory.errors import InvalidInputError, MuptheoryError
from muptheory.methods import MethodConfig
from muptheory.parameterization import Parameterization
from muptheory.symbolic import classify, derive_mup

HALF = F(1, 2)
TP_MUP = Parameterization(b=(HALF, HALF, HALF), c=(F(0), F(1), F(1)))
DERIVED_FEEDBACK = {
    "b": {"hidden": HALF, "last": HALF},
    "c": {"hidden": F(1), "last": F(0)},
}


def trained(method: str, **options) -> MethodConfig:
    return MethodConfig.create(method, feedback="trained", **options)


@pytest.mark.parametrize("method", ["tp", "dtp"])
def test_trained_feedback_keeps_standard_last_layer_and_pins_feedback(method):
    d = derive_mup(trained(method))
    p = d.parameterization
    assert (p.b.first, p.b.hidden, p.b.last) == (HALF, HALF, HALF)
    assert (p.c.first, p.c.hidden, p.c.last) == (0, 1, 1)
    assert d.feedback == DERIVED_FEEDBACK
    assert d.extra == {}


@pytest.mark.parametrize("method", ["tp", "dtp"])
def test_trained_feedback_json_and_notes(method):
    out = derive_mup(trained(method)).to_json()
    assert out["feedback"] == {
        "b": {"hidden": "1/2", "last": "1/2"},
        "c": {"hidden": "1", "last": "0"},
    }
    assert any(
        "top map needs its own learning-rate exponent" in n for n in out["notes"]
    )
    assert any("kernel regime: none" in n for n in out["notes"])


def test_trained_feedback_explanation_names_rules_and_pins():
    lines = derive_mup(trained("tp")).explanation
    text = "\n".join(lines)
    assert "pins b_fb_last = 0" in text and "pins b_fb_hidden = 1/2" in text
    assert any("dV_l s (same batch)" in ln and "[lln]" in ln for ln in lines)
    assert any(ln.lstrip().startswith("dV_L s ") and "[fixed]" in ln for ln in lines)
    assert "c_fb_hidden = 1, c_fb_last = 0" in text


@pytest.mark.parametrize("method", ["tp", "dtp"])
def test_classify_at_derived_exponents_is_feature_learning(method):
    result = classify(trained(method), TP_MUP, feedback=DERIVED_FEEDBACK)
    assert result.stable and result.regime == "feature_learning" and result.r == 0
    assert not any("not maximal" in r for r in result.reasons)


@pytest.mark.parametrize("method", ["tp", "dtp"])
def test_default_feedback_rates_are_the_derived_ones(method):
    # --feedback-c (hidden maps) and --feedback-c-last (top map) default to the
    # derived c_fb = 1 and 0, so classify with no feedback options is the muP
    config = trained(method)
    assert (config.feedback_c, config.feedback_c_last) == (1, 0)
    result = classify(config, TP_MUP)
    assert result.stable and result.regime == "feature_learning" and result.r == 0
    assert not any("not maximal" in r for r in result.reasons)


@pytest.mark.parametrize("method", ["tp", "dtp"])
def test_shared_feedback_rate_zero_blows_up_hidden_feedback(method):
    result = classify(trained(method, feedback_c="0", feedback_c_last="0"), TP_MUP)
    assert not result.stable and result.regime == "unstable"
    # hidden step: M^(1 - c_fb) r s^2 with r, s Theta(1) at pass 1 (TP) -> >= M^1
    step = result.exponents["reconstruction_step[hidden]"]
    assert step >= 1


@pytest.mark.parametrize("method", ["tp", "dtp"])
def test_shared_feedback_rate_one_is_stable_with_lazy_top_feedback(method):
    result = classify(trained(method, feedback_c="1", feedback_c_last="1"), TP_MUP)
    assert result.stable and result.regime == "feature_learning"
    assert result.exponents["reconstruction_step[last]"] == -1
    assert any(
        "not maximal" in r and "reconstruction_step[last]" in r for r in result.reasons
    )


def test_dtp_with_vanishing_feedback_init_is_trivial():
    # b_fb = 1: V(0) entries shrink by M^(-1/2); DTP's signal V_L e ~ M^(-1/2), so
    # hidden updates M^(1 - c_l - 1/2) vanish and only the readout learns, as long
    # as the top map's own step (c_fb_last = 1) leaves it near that small init
    lazy = trained("dtp", feedback_b="1", feedback_c="1", feedback_c_last="1")
    result = classify(lazy, TP_MUP)
    assert result.stable and result.regime == "trivial"
    # with the derived c_fb_last = 0 the top map learns Theta(1) in one step,
    # and its learned part carries the error down: features move again
    learning = trained("dtp", feedback_b="1", feedback_c="1", feedback_c_last="0")
    assert classify(learning, TP_MUP).regime == "feature_learning"


def test_no_kernel_regime_with_trained_feedback():
    config = trained("tp")
    grid = [F(k, 2) for k in range(-1, 4)]
    for c1 in grid:
        for ch in grid:
            for cl in grid:
                p = Parameterization(b=(HALF, HALF, HALF), c=(c1, ch, cl))
                regime = classify(config, p, feedback=DERIVED_FEEDBACK).regime
                assert regime != "kernel"


def test_feedback_options_with_ridge_feedback_are_rejected():
    with pytest.raises(MuptheoryError):
        config = MethodConfig("tp", feedback="ridge", feedback_c=F(0))
        derive_mup(config)


@pytest.mark.parametrize(
    "given", [{"feedback_b": "1"}, {"feedback_c": "0"}, {"feedback_c_last": "1"}]
)
def test_feedback_exponents_given_to_a_derivation_are_rejected(given):
    # they are what the derivation finds; taking them silently would mislead
    with pytest.raises(InvalidInputError, match="derivation finds"):
        derive_mup(trained("tp", **given))


def test_ridge_exponent_with_trained_feedback_is_rejected():
    with pytest.raises(MuptheoryError):
        derive_mup(MethodConfig("dtp", feedback="trained", mu_bar=F(1)))


def test_malformed_feedback_exponents_are_rejected():
    with pytest.raises(InvalidInputError):
        classify(trained("tp"), TP_MUP, feedback={"b": {"hidden": HALF}, "c": {}})


def test_feedback_exponents_for_a_method_without_feedback_are_rejected():
    with pytest.raises(InvalidInputError):
        classify(MethodConfig.create("bp"), TP_MUP, feedback=DERIVED_FEEDBACK)
