"""Learning rules and their options, shared by the symbolic engine, the simulator,
the limit engine and the CLI.

A ``MethodConfig`` names a learning rule and the knobs that rule has. Knobs that
scale with width are written as exponents of the width M, with the sign convention
of the energy coefficients: ``gamma_l = gamma0 M^{-gamma_bar_l}``,
``lambda = lambda0 M^{-lambda_bar}`` (GNT damping), ``mu = mu0 M^{-mu_bar}`` (TP
ridge constant). Passing a knob that the rule does not have is an error, so that a
typo never runs silently with defaults.

Example:
    >>> cfg = MethodConfig.create("pc", gamma_bar_last="-1")
    >>> cfg.gamma_bar_last
    Fraction(-1, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from fractions import Fraction
from typing import Any

from muptheory.errors import InvalidInputError
from muptheory.parameterization import parse_exponent

METHODS: tuple[str, ...] = ("bp", "gnt", "pc", "tp", "dtp")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "kfac", "shampoo")
PC_INFERENCE: tuple[str, ...] = ("equilibrium", "sequential", "iterative")
TP_FEEDBACK: tuple[str, ...] = ("ridge", "trained")

# Which options each method accepts (beyond "method" itself).
_APPLIES: dict[str, tuple[str, ...]] = {
    "bp": ("optimizer", "damping_a", "damping_g", "damping", "damping0"),
    "gnt": ("lambda_bar", "lambda0"),
    "pc": (
        "gamma0",
        "gamma_bar_hidden",
        "gamma_bar_last",
        "last_layer_gamma",
        "inference",
        "inference_steps",
        "inference_rate",
        "fpa",
    ),
    "tp": ("mu_bar", "mu0", "feedback", "feedback_b", "feedback_c", "feedback_c_last"),
    "dtp": (
        "mu_bar",
        "mu0",
        "feedback",
        "feedback_b",
        "feedback_c",
        "feedback_c_last",
    ),
}
# Options that apply only under one choice of another option: option -> (the
# choosing option, the values under which it applies). Giving one elsewhere is an
# error, as giving an option of another method is.
_APPLIES_WHEN: dict[str, tuple[str, tuple[str, ...]]] = {
    "inference_steps": ("inference", ("iterative",)),
    "inference_rate": ("inference", ("iterative", "sequential")),
    "mu_bar": ("feedback", ("ridge",)),
    "mu0": ("feedback", ("ridge",)),
    "feedback_b": ("feedback", ("trained",)),
    "feedback_c": ("feedback", ("trained",)),
    "feedback_c_last": ("feedback", ("trained",)),
    "damping_a": ("optimizer", ("kfac",)),
    "damping_g": ("optimizer", ("kfac",)),
    "damping": ("optimizer", ("shampoo",)),
    "damping0": ("optimizer", ("kfac", "shampoo")),
}
_EXPONENT_OPTIONS = {
    "lambda_bar",
    "gamma_bar_hidden",
    "gamma_bar_last",
    "mu_bar",
    "feedback_b",
    "feedback_c",
    "feedback_c_last",
}
# Options holding one exponent per layer group (first, hidden, last).
_GROUP_EXPONENT_OPTIONS = ("damping_a", "damping_g", "damping")


@dataclass(frozen=True)
class MethodConfig:
    """A learning rule and its options.

    Attributes:
        method: one of ``bp``, ``gnt``, ``pc``, ``tp``, ``dtp``.
        optimizer: BP's optimizer: ``sgd``, ``adam``, ``kfac`` or ``shampoo``.
        lambda_bar: GNT damping exponent, lambda = lambda0 M^{-lambda_bar}; ``None``
            means lambda = 0 (pseudo-inverse targets). Default 1, the size of J J^T
            under muP.
        lambda0: GNT damping prefactor.
        gamma0: PC last-layer energy prefactor, gamma_L = gamma0 M^{-gamma_bar_last};
            hidden layers use gamma_l = M^{-gamma_bar_hidden}.
        gamma_bar_hidden: PC energy-coefficient exponent of the hidden layers.
        gamma_bar_last: PC energy-coefficient exponent of the last layer (the knob).
        last_layer_gamma: PC weight-update convention: whether the last layer's
            weight update carries the factor gamma_L (literal descent on the
            gamma-weighted energy). Default False, the reading under which
            gamma_bar_last = -1 reproduces GNT's muP.
        inference: PC inference: ``equilibrium``, ``sequential`` (one top-down sweep)
            or ``iterative`` (``inference_steps`` gradient steps on the energy).
        inference_steps: T for iterative inference.
        inference_rate: step size of iterative or sequential inference.
        fpa: PC fixed prediction assumption.
        mu_bar: TP/DTP ridge exponent, mu = mu0 M^{-mu_bar}.
        mu0: TP/DTP ridge prefactor.
        feedback: TP/DTP feedback map: ``ridge`` (closed form over the batch) or
            ``trained`` (feedback weights trained by a reconstruction loss).
        feedback_b: init exponent of every trained feedback map V_l (fan-in
            convention; 1/2, as the engine derives for all of them).
        feedback_c: learning-rate exponent of the hidden feedback maps V_2..V_(L-1)
            (M x M); the default 1 is what the engine derives (c_fb = 0 makes their
            reconstruction step grow like M, an aligned sum over M activations).
        feedback_c_last: learning-rate exponent of the top feedback map V_L (M x C);
            the default 0 is what the engine derives (its reconstruction step is a
            sum over the C outputs). See ``muptheory exponents tp --feedback
            trained``.
        damping_a, damping_g: K-FAC damping exponents of the input factor A_l and
            the signal factor G_l, one per layer group (first, hidden, last):
            rho = damping0 M^(exponent), a positive exponent growing with width.
            ``None``: the exponents the engine derives for K-FAC's muP
            (``derive_mup(config).extra``).
        damping: Shampoo damping exponents (first, hidden, last) of L and R,
            rho = damping0 M^(exponent); ``None``: the derived ones.
        damping0: prefactor of the K-FAC and Shampoo dampings.
    """

    method: str
    optimizer: str = "sgd"
    lambda_bar: Fraction | None = Fraction(1)
    lambda0: float = 1.0
    gamma0: float = 1.0
    gamma_bar_hidden: Fraction = Fraction(0)
    gamma_bar_last: Fraction = Fraction(0)
    last_layer_gamma: bool = False
    inference: str = "equilibrium"
    inference_steps: int = 20
    inference_rate: float = 0.1
    fpa: bool = False
    mu_bar: Fraction = Fraction(0)
    mu0: float = 1.0
    feedback: str = "ridge"
    feedback_b: Fraction = Fraction(1, 2)
    feedback_c: Fraction = Fraction(1)
    feedback_c_last: Fraction = Fraction(0)
    damping_a: tuple[Fraction, Fraction, Fraction] | None = None
    damping_g: tuple[Fraction, Fraction, Fraction] | None = None
    damping: tuple[Fraction, Fraction, Fraction] | None = None
    damping0: float = 1.0

    @classmethod
    def create(cls, method: str, **options) -> MethodConfig:
        """Build a config, rejecting options that do not apply to ``method``.

        Options whose value is ``None`` are treated as not given, except
        ``lambda_bar=None`` which the caller can pass explicitly through
        ``lambda_zero=True``.
        """
        method = normalize_method(method)
        lambda_zero = options.pop("lambda_zero", False)
        given = {k: v for k, v in options.items() if v is not None}
        known = {f.name for f in fields(cls)} - {"method"}
        for key in given:
            if key not in known:
                raise InvalidInputError(f"unknown option {key!r}")
            if key not in _APPLIES[method]:
                raise InvalidInputError(
                    f"option {_flag(key)} does not apply to method {method!r}"
                )
        if lambda_zero:
            if method != "gnt":
                raise InvalidInputError(
                    f"option --lambda-zero does not apply to {method!r}"
                )
            if "lambda_bar" in given:
                raise InvalidInputError(
                    "give either --lambda-bar or --lambda-zero, not both"
                )
            if "lambda0" in given:
                raise InvalidInputError(
                    "option --lambda0 does not apply with --lambda-zero (lambda = 0)"
                )
            given["lambda_bar"] = None
        for key in _EXPONENT_OPTIONS & given.keys():
            if given[key] is not None:
                given[key] = parse_exponent(given[key])
        for key in set(_GROUP_EXPONENT_OPTIONS) & given.keys():
            given[key] = _group_exponents(key, given[key])
        config = cls(method=method, **given)
        config.validate()
        _check_conditions(config, given)
        return config

    def validate(self) -> None:
        """Check option values that do not depend on the method's theory."""
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("inference", self.inference, PC_INFERENCE)
        _one_of("feedback", self.feedback, TP_FEEDBACK)
        if not isinstance(self.inference_steps, int) or self.inference_steps < 1:
            raise InvalidInputError(
                f"inference_steps must be a positive integer, got {self.inference_steps!r}"
            )
        for name in ("lambda0", "gamma0", "mu0", "damping0"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < float("inf")):
                raise InvalidInputError(
                    f"{name} must be a positive number, got {value!r}"
                )
        if not (
            isinstance(self.inference_rate, int | float)
            and 0 < self.inference_rate < float("inf")
        ):
            raise InvalidInputError(
                f"inference_rate must be positive, got {self.inference_rate!r}"
            )

    def with_options(self, **options) -> MethodConfig:
        return replace(self, **options)

    def options(self) -> dict:
        """Every option of this method, JSON-ready, including those that the
        method's other choices switch off (``config_from_options`` reads it back)."""
        out = {}
        for key in _APPLIES[self.method]:
            value = getattr(self, key)
            if isinstance(value, tuple):
                value = [str(v) for v in value]
            out[key] = str(value) if isinstance(value, Fraction) else value
        return out


def config_from_options(method: str, options: Mapping[str, Any]) -> MethodConfig:
    """Rebuild a ``MethodConfig`` from its method and ``options()``.

    ``options()`` writes every option of the method, so the ones that the config's
    choices switch off (``inference_steps`` under equilibrium inference, say) are
    dropped here instead of being rejected; they hold their defaults.
    """
    options = dict(options)
    if method == "gnt" and "lambda_bar" in options and options["lambda_bar"] is None:
        options.pop("lambda_bar")
        options.pop("lambda0", None)
        options["lambda_zero"] = True
    defaults = {f.name: f.default for f in fields(MethodConfig)}
    for key, (chooser, values) in _APPLIES_WHEN.items():
        if key in options and options.get(chooser, defaults[chooser]) not in values:
            options.pop(key)
    return MethodConfig.create(method, **options)


def normalize_method(method: str) -> str:
    key = str(method).strip().lower()
    if key not in METHODS:
        raise InvalidInputError(
            f"unknown method {method!r}; use one of {', '.join(METHODS)}"
        )
    return key


def applicable_options(method: str) -> tuple[str, ...]:
    return _APPLIES[normalize_method(method)]


def _check_conditions(config: MethodConfig, given: Mapping[str, Any]) -> None:
    """Reject a given option that the choice of another one switches off."""
    for key, (chooser, values) in _APPLIES_WHEN.items():
        choice = getattr(config, chooser)
        if key in given and choice not in values:
            where = " or ".join(f"{_flag(chooser)} {v}" for v in values)
            raise InvalidInputError(
                f"option {_flag(key)} applies only with {where}, "
                f"not with {_flag(chooser)} {choice}"
            )


def _group_exponents(key: str, value: Any) -> tuple[Fraction, Fraction, Fraction]:
    """Three exponents (first, hidden, last) from a list, each parsed exactly."""
    what = f"option {_flag(key)} takes three exponents (first, hidden, last)"
    if not isinstance(value, list | tuple):
        raise InvalidInputError(f"{what}, got {value!r}")
    if len(value) != 3:
        shown = " ".join(str(v) for v in value)
        raise InvalidInputError(f"{what}, got {len(value)}: {shown}")
    try:
        return tuple(parse_exponent(v) for v in value)
    except InvalidInputError as err:
        raise InvalidInputError(f"option {_flag(key)}: {err}") from None


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidInputError(
            f"unknown {name} {value!r}; use one of {', '.join(allowed)}"
        )


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")
