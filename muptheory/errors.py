"""The project's exceptions.

Every error a user can cause derives from ``MuptheoryError``; the CLI prints its
message on one line and exits with code 2.
"""


class MuptheoryError(Exception):
    """Base class of all errors caused by the user's input or run."""


class InvalidInputError(MuptheoryError, ValueError):
    """An argument is malformed or outside the accepted range."""


class UnsupportedError(MuptheoryError, NotImplementedError):
    """A combination of options that the theory or the engine does not cover."""


class DivergedError(MuptheoryError, ArithmeticError):
    """A numerical run produced NaN or overflowed."""

    def __init__(
        self, message: str, *, width: int | None = None, step: int | None = None
    ):
        super().__init__(message)
        self.width = width
        self.step = step
