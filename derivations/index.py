"""Build ``index.md`` from the findings every piece stored.

One section per finding, in the order of ``PIECES``: its figure, its two sentences,
whether it agrees with theory, and links to the files behind it. Pieces not run yet
are listed as missing, so a partial regenerate is visible as such.

    python derivations/index.py --out regenerated
"""

from __future__ import annotations

import sys
from pathlib import Path

from muptheory.derivations import PIECES
from muptheory.derivations.common import Finding, load_findings, write_text
from muptheory.errors import MuptheoryError

VERDICT = {
    True: "agrees with theory",
    False: "**does not agree with theory**",
    None: "a measurement (no prediction to meet)",
}


def render_index(out: Path) -> str:
    """The index page of the output directory ``out``."""
    stored = load_findings(out)
    findings = [f for piece in PIECES for f in stored.get(piece, [])]
    agree = sum(f.agrees is True for f in findings)
    disagree = [f.title for f in findings if f.agrees is False]
    lines = [
        "# muptheory: the paper's results, regenerated",
        "",
        "Written by `muptheory regenerate`; every figure and table here comes from the "
        "project's engines. Rerunning the command reuses finished sweep cells.",
        "",
        f"{agree} of {len(findings)} findings agree with theory"
        + (f"; disagreeing: {', '.join(disagree)}." if disagree else "."),
    ]
    if "transfer" in stored:
        lines += [
            "",
            "Under SP some widths diverge at every learning rate of the grid; "
            "regenerate warns about each such width. That is expected: it is what "
            "the transfer findings below compare muP against.",
        ]
    modes = sorted({f.mode for f in findings if f.mode})
    if len(modes) > 1:
        lines += [
            "",
            f"Mixed sizes: these findings come from {' and '.join(modes)} runs "
            "(each section says which); rerun with one mode for a uniform page.",
        ]
    missing = [p for p in PIECES if p not in stored]
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)}."]
    for finding in findings:
        lines += ["", *_section(finding, out)]
    return "\n".join(lines) + "\n"


def _section(finding: Finding, out: Path) -> list[str]:
    lines = [f"## {finding.title}", ""]
    if finding.figure:
        lines += [f"![{finding.title}]({finding.figure})", ""]
    lines += [finding.summary, "", f"Verdict: {VERDICT[finding.agrees]}."]
    if finding.mode:
        lines[-1] += f" Sizes: {finding.mode}."
    if finding.files:
        links = ", ".join(f"[{name}]({name})" for name in finding.files)
        lines += ["", f"Files: {links}."]
    missing = [
        name
        for name in [finding.figure, *finding.files]
        if name and not (out / name).is_file()
    ]
    if missing:
        lines += ["", f"Missing (rerun the piece): {', '.join(missing)}."]
    return lines


def write_index(out: Path) -> Path:
    """Write ``out/index.md`` atomically and return its path."""
    path = Path(out) / "index.md"
    write_text(path, render_index(Path(out)))
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="derivations/index.py", description=__doc__)
    parser.add_argument("--out", default="regenerated", metavar="DIR")
    args = parser.parse_args(argv)
    if not Path(args.out).is_dir():
        print(f"index: error: {args.out!r} is not a directory", file=sys.stderr)
        return 2
    try:
        print(write_index(Path(args.out)))
    except MuptheoryError as err:
        print(f"index: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
