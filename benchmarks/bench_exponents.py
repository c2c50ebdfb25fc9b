"""How long the exponent engine takes to derive each row of the paper table.

Prints, per row, the time of ``derive_mup`` after import and its ratio to a
reference measured in the same run: sympy solving the 3 x 3 linear system that
SGD's muP reduces to once the tight pieces are known. Run:

    python benchmarks/bench_exponents.py
"""

from __future__ import annotations

import time

import sympy

from muptheory.methods import MethodConfig
from muptheory.symbolic import engine
from muptheory.symbolic.tables import TABLE_ROWS


def reference_seconds() -> float:
    b, c1, ch, cl = sympy.symbols("b c1 ch cl")
    start = time.perf_counter()
    for _ in range(20):
        sympy.linsolve([1 - cl, -1 - c1, 1 - ch - 1], [c1, ch, cl])
    return (time.perf_counter() - start) / 20


def main() -> None:
    ref = reference_seconds()
    print(f"reference (sympy 3x3 linsolve): {ref * 1e3:.2f} ms")
    total = 0.0
    notes_seconds = 0.0
    for label, method, options in TABLE_ROWS:
        engine.clear_caches()
        start = time.perf_counter()
        derivation = engine.derive_mup(MethodConfig.create(method, **options))
        seconds = time.perf_counter() - start
        if derivation.later_notes:
            start = time.perf_counter()
            derivation.notes  # noqa: B018 - reading the notes runs the sweep
            notes_seconds += time.perf_counter() - start
        total += seconds
        print(f"{label:<48} {seconds:7.2f} s  ({seconds / ref:8.0f} x reference)")
    print(f"{'whole table':<48} {total:7.2f} s  ({total / ref:8.0f} x reference)")
    # trained TP/DTP feedback is not a row of the table: timed here on its own
    for method in ("tp", "dtp"):
        engine.clear_caches()
        start = time.perf_counter()
        engine.derive_mup(MethodConfig.create(method, feedback="trained"))
        seconds = time.perf_counter() - start
        label = f"{method.upper()}, trained feedback (not in the table)"
        print(f"{label:<48} {seconds:7.2f} s  ({seconds / ref:8.0f} x reference)")
    # TP's kernel-regime note is a sweep of classify over a grid, written when the
    # notes are first read (JSON output, docs), not part of deriving the numbers
    label = "kernel-regime notes of TP/DTP (on first use)"
    print(
        f"{label:<48} {notes_seconds:7.2f} s  ({notes_seconds / ref:8.0f} x reference)"
    )


if __name__ == "__main__":
    main()
