"""Coord checks of TP and DTP with trained feedback at the muP the engine derives.

The derived exponents (tests/test_symbolic_feedback.py) give the hidden feedback maps
c_fb = 1 and the top map c_fb = 0; the simulator takes them per map
(``feedback_c``, ``feedback_c_last``). Under that muP every forward change is
Theta(1) (exponent 0) and, with b_L = 1/2, so is the output at init.
"""

import pytest

from muptheory.data import load_dataset
from muptheory.methods import MethodConfig
from muptheory.simulate import CoordCheckSettings, coord_check
from muptheory.symbolic import derive_mup


@pytest.mark.parametrize("method", ["tp", "dtp"])
def test_trained_feedback_mup_keeps_every_change_theta_one(method):
    config = MethodConfig.create(method, feedback="trained")
    param = derive_mup(config).parameterization
    settings = CoordCheckSettings(widths=(64, 128, 256, 512), seeds=3, steps=2)
    result = coord_check(
        config, param, load_dataset("digits", seed=0), settings=settings
    )
    assert result.diverged == []
    for fit in result.fits:
        assert fit.predicted_exponent == 0, fit
    assert result.all_agree, result.table()
