"""abc-parameterizations: per-layer-group width exponents, conventions and presets.

An L-layer MLP of hidden width M is abc-parameterized (Yang & Hu, Tensor Programs IV)
when layer l uses the weights W_l = M^{-a_l} w_l, with trainable w_l initialized with
entries of variance sigma^2 M^{-2 b_l} and trained with learning rate eta M^{-c_l}.
The exponents are grouped as ``first`` (input layer, fan-in d fixed), ``hidden``
(every layer of fan-in M and fan-out M) and ``last`` (output layer, fan-out C fixed).

Two conventions for b are in use, and every object says which it carries:

- ``width_only`` (Tensor Programs IV): b counts powers of M only, so the standard
  input layer, whose variance 1/d does not depend on M, has b_1 = 0.
- ``fan_in`` (Ishikawa & Karakida): b is counted against the fan-in, so b = 1/2 is
  "variance 1/fan_in". We read it as Var = sigma^2 fan_in^{-1} M^{1 - 2 b}, which is
  sigma^2 M^{-2 b} for the hidden and last layers and sigma^2 d^{-1} M^{1 - 2 b_1} for
  the first: the two conventions differ exactly by b_1(width_only) = b_1(fan_in) - 1/2.

The learning-rate and multiplier exponents c and a count powers of M in both.
Exponents are ``fractions.Fraction`` everywhere; nothing here touches a float until a
concrete width is asked for.

Example:
    >>> mup = preset("mup")
    >>> mup.to("width_only").b.as_tuple()
    (Fraction(0, 1), Fraction(1, 2), Fraction(1, 1))
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Literal

from muptheory.errors import InvalidInputError

Convention = Literal["fan_in", "width_only"]
CONVENTIONS: tuple[str, ...] = ("fan_in", "width_only")
GROUPS: tuple[str, ...] = ("first", "hidden", "last")

# The shift between the two conventions, per group: b(width_only) = b(fan_in) - shift.
_FAN_IN_SHIFT = {"first": Fraction(1, 2), "hidden": Fraction(0), "last": Fraction(0)}


def parse_exponent(value: str | int | float | Fraction) -> Fraction:
    """Read an exponent as an exact rational.

    Accepts integers, Fractions, strings such as ``"1/2"``, ``"-1"`` or ``"0.25"``, and
    floats that are written exactly in decimal (``0.5``).

    Raises:
        InvalidInputError: for anything that is not a finite rational number.
    """
    if isinstance(value, bool):
        raise InvalidInputError(f"exponent must be a rational number, not {value!r}")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"exponent must be finite, got {value!r}")
        return _bounded(Fraction(repr(value)), value)
    if isinstance(value, str):
        # ASCII digits only (int() would take other scripts' digits and "1_000");
        # the typographic minus sign reads as "-"
        text = value.strip().replace("\u2212", "-")
        if not _EXPONENT_TEXT.fullmatch(text):
            raise InvalidInputError(
                f"exponent {value!r} is not a rational number; "
                "write an integer, a fraction such as 1/2 or a decimal such as 0.5"
            )
        try:
            parsed = Fraction(text)
        except ZeroDivisionError:
            raise InvalidInputError(
                f"exponent {value!r} divides by zero; write a rational such as 1/2"
            ) from None
        except ValueError:
            raise InvalidInputError(
                f"exponent {value!r} is not a rational number; "
                "write an integer, a fraction such as 1/2 or a decimal such as 0.5"
            ) from None
        return _bounded(parsed, value)
    raise InvalidInputError(
        f"exponent must be a rational number, not {type(value).__name__}"
    )


MAX_EXPONENT = 1000
# an integer, a fraction p/q, or a decimal with an optional exponent, in ASCII
_EXPONENT_TEXT = re.compile(
    r"[+-]?(?:\d+/\d+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)", re.ASCII
)


def _bounded(value: Fraction, original) -> Fraction:
    if abs(value) > MAX_EXPONENT:
        raise InvalidInputError(
            f"exponent {original!r} is out of range: width exponents must lie in "
            f"[-{MAX_EXPONENT}, {MAX_EXPONENT}]"
        )
    return value


def format_exponent(value: Fraction) -> str:
    """Write an exponent the way the JSON output carries it: ``"1/2"``, ``"-1"``."""
    return str(Fraction(value))


@dataclass(frozen=True)
class LayerExponents:
    """One exponent per layer group (first, hidden, last)."""

    first: Fraction
    hidden: Fraction
    last: Fraction

    def __post_init__(self) -> None:
        for group in GROUPS:
            object.__setattr__(self, group, parse_exponent(getattr(self, group)))

    @classmethod
    def of(cls, values) -> LayerExponents:
        """Build from a sequence of three values or a mapping keyed by group."""
        if isinstance(values, LayerExponents):
            return values
        if isinstance(values, dict):
            missing = [g for g in GROUPS if g not in values]
            extra = [k for k in values if k not in GROUPS]
            if missing or extra:
                raise InvalidInputError(
                    f"exponents need exactly the keys {', '.join(GROUPS)}; "
                    f"missing {missing}, unknown {extra}"
                )
            return cls(*(values[g] for g in GROUPS))
        values = list(values)
        if len(values) != 3:
            raise InvalidInputError(
                f"expected 3 exponents (first, hidden, last), got {len(values)}"
            )
        return cls(*values)

    def __getitem__(self, group: str) -> Fraction:
        if group not in GROUPS:
            raise InvalidInputError(
                f"unknown layer group {group!r}; use one of {GROUPS}"
            )
        return getattr(self, group)

    def as_tuple(self) -> tuple[Fraction, Fraction, Fraction]:
        return (self.first, self.hidden, self.last)

    def map(self, fn) -> LayerExponents:
        return LayerExponents(*(fn(g, getattr(self, g)) for g in GROUPS))

    def to_json(self) -> dict[str, str]:
        return {g: format_exponent(getattr(self, g)) for g in GROUPS}


def _zeros() -> LayerExponents:
    return LayerExponents(0, 0, 0)


@dataclass(frozen=True)
class Parameterization:
    """Width exponents of initialization (b), learning rate (c) and multiplier (a).

    Attributes:
        b: initialization exponents, in ``convention``.
        c: learning-rate exponents (powers of M in both conventions).
        a: multiplier exponents (powers of M in both conventions).
        convention: ``"fan_in"`` or ``"width_only"``, the reading of ``b``.
        name: the preset's name, if it came from one.
    """

    b: LayerExponents
    c: LayerExponents
    a: LayerExponents = field(default_factory=_zeros)
    convention: str = "fan_in"
    name: str | None = None

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise InvalidInputError(
                f"unknown convention {self.convention!r}; use one of {CONVENTIONS}"
            )
        for attr in ("a", "b", "c"):
            object.__setattr__(self, attr, LayerExponents.of(getattr(self, attr)))

    # -- conventions ---------------------------------------------------------------

    def to(self, convention: str) -> Parameterization:
        """The same parameterization with b written in ``convention`` (exact)."""
        if convention not in CONVENTIONS:
            raise InvalidInputError(
                f"unknown convention {convention!r}; use one of {CONVENTIONS}"
            )
        if convention == self.convention:
            return self
        sign = -1 if convention == "width_only" else 1
        b = self.b.map(lambda g, v: v + sign * _FAN_IN_SHIFT[g])
        return replace(self, b=b, convention=convention)

    def to_fan_in(self) -> Parameterization:
        return self.to("fan_in")

    def to_width_only(self) -> Parameterization:
        return self.to("width_only")

    # -- the abc symmetry ----------------------------------------------------------

    def shifted(self, theta, *, c_rate: int = 2) -> Parameterization:
        """Apply the symmetry (a, b, c) -> (a + t, b - t, c - c_rate t) per group.

        For SGD-like updates (the gradient of w carries M^{-a}) ``c_rate`` is 2 and
        training is unchanged; for Adam-like normalized updates it is 1.
        """
        t = LayerExponents.of(theta if not _is_scalar(theta) else [theta] * 3)
        return replace(
            self,
            a=self.a.map(lambda g, v: v + t[g]),
            b=self.b.map(lambda g, v: v - t[g]),
            c=self.c.map(lambda g, v: v - c_rate * t[g]),
            name=None,
        )

    def without_multipliers(self, *, c_rate: int = 2) -> Parameterization:
        """The equivalent parameterization with a = 0 (see ``shifted``)."""
        if all(v == 0 for v in self.a.as_tuple()):
            return self
        return replace(
            self.shifted(self.a.map(lambda g, v: -v), c_rate=c_rate), name=self.name
        )

    # -- concrete numbers at a width -----------------------------------------------

    def init_std(
        self, group: str, *, width: int, fan_in: int, sigma: float = 1.0
    ) -> float:
        """Standard deviation of w's entries: sqrt(sigma^2 fan_in^{-1} M^{1 - 2 b}).

        Uses the fan-in reading of b, so hidden and last layers get sigma M^{-b} and the
        first layer sigma d^{-1/2} M^{1/2 - b_1}.
        """
        b = self.to_fan_in().b[group]
        _check_width(width)
        return sigma * math.sqrt(float(width) ** float(1 - 2 * b) / fan_in)

    def lr_scale(self, group: str, *, width: int) -> float:
        """The factor M^{-c} of the group's learning rate."""
        _check_width(width)
        return float(width) ** float(-self.c[group])

    def multiplier(self, group: str, *, width: int) -> float:
        """The factor M^{-a} in W = M^{-a} w."""
        _check_width(width)
        return float(width) ** float(-self.a[group])

    # -- I/O -----------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "convention": self.convention,
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "c": self.c.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict) -> Parameterization:
        try:
            return cls(
                a=LayerExponents.of(data.get("a", {g: "0" for g in GROUPS})),
                b=LayerExponents.of(data["b"]),
                c=LayerExponents.of(data["c"]),
                convention=data.get("convention", "fan_in"),
                name=data.get("name"),
            )
        except KeyError as err:
            raise InvalidInputError(
                f"parameterization JSON lacks the key {err}"
            ) from None

    def describe(self) -> str:
        rows = [f"{'':8}{'first':>8}{'hidden':>8}{'last':>8}"]
        for attr in ("a", "b", "c"):
            values = getattr(self, attr).as_tuple()
            rows.append(
                f"{attr:8}" + "".join(f"{format_exponent(v):>8}" for v in values)
            )
        head = f"{self.name or 'parameterization'} ({self.convention} convention)"
        return head + "\n" + "\n".join(rows)


def _is_scalar(value) -> bool:
    return isinstance(value, int | float | str | Fraction)


def _check_width(width: int) -> None:
    if not isinstance(width, int | float) or not width > 0:
        raise InvalidInputError(f"width must be a positive integer, got {width!r}")


# -- presets (fan-in convention, first / hidden / last) -----------------------------

_PRESETS: dict[str, dict] = {
    # standard parameterization, one learning rate for every layer
    "sp": dict(b=("1/2", "1/2", "1/2"), c=(0, 0, 0)),
    # standard parameterization with learning rate ~ 1/width
    "sp-lr1/m": dict(b=("1/2", "1/2", "1/2"), c=(1, 1, 1)),
    # NTK-like: standard init with the learning rates of the NTK parameterization
    "ntk": dict(b=("1/2", "1/2", "1/2"), c=(0, 1, 1)),
    # maximal update parameterization for SGD
    "mup": dict(b=("1/2", "1/2", 1), c=(-1, 0, 1)),
    # mean-field for one hidden layer: f = (1/M) sum_i v_i phi(w_i . x), one learning
    # rate ~ M. Written with multipliers; for a hidden group (deeper nets) it falls
    # back to muP's hidden row. Equivalent to muP by the abc symmetry.
    "mean-field": dict(a=(0, "1/2", 1), b=("1/2", 0, 0), c=(-1, -1, -1)),
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)
_ALIASES = {
    "mf": "mean-field",
    "meanfield": "mean-field",
    "mean_field": "mean-field",
    "ntk-like": "ntk",
    "mu-p": "mup",
    "sp-1/m": "sp-lr1/m",
}


def preset(name: str) -> Parameterization:
    """A named parameterization, in the fan-in convention.

    Names: ``sp``, ``sp-lr1/m``, ``ntk``, ``mup``, ``mean-field`` (aliases ``mf``,
    ``ntk-like``). These are the SGD presets; a method's own muP comes from
    ``muptheory.symbolic.derive_mup``.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _PRESETS:
        raise InvalidInputError(
            f"unknown parameterization {name!r}; use one of {', '.join(PRESET_NAMES)}"
        )
    spec = _PRESETS[key]
    return Parameterization(
        a=LayerExponents.of(spec.get("a", (0, 0, 0))),
        b=LayerExponents.of(spec["b"]),
        c=LayerExponents.of(spec["c"]),
        convention="fan_in",
        name=key,
    )
