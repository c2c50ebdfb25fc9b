"""docs/cli.md is the parser's own reference: regenerating it changes nothing, and it
names every sub-command and every option string the parser accepts."""

import importlib.util
from pathlib import Path

import pytest

from muptheory.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
CLI_MD = ROOT / "docs" / "cli.md"
REGENERATE = "run `python derivations/cli_reference.py` and commit docs/cli.md"


def _load_generator():
    path = ROOT / "derivations" / "cli_reference.py"
    spec = importlib.util.spec_from_file_location("cli_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator():
    return _load_generator()


@pytest.fixture(scope="module")
def committed() -> str:
    return CLI_MD.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def commands(generator):
    return list(generator.subcommands(build_parser()))


def _option_strings(parser):
    return {s for action in parser._actions for s in action.option_strings}


def test_committed_cli_reference_matches_the_parser(generator, committed):
    assert generator.render_cli_reference() == committed, (
        f"docs/cli.md is stale: {REGENERATE}"
    )


def test_cli_reference_ignores_the_terminal_width(generator, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = generator.render_cli_reference()
    monkeypatch.setenv("COLUMNS", "300")
    assert generator.render_cli_reference() == narrow


def test_cli_reference_says_it_is_generated_and_by_what(committed):
    head = "\n".join(committed.splitlines()[:5])
    assert "generated" in head
    assert "derivations/cli_reference.py" in head


def test_every_subcommand_has_a_section_with_its_usage(commands, committed):
    names = [name for name, _, _ in commands]
    assert {"exponents", "classify", "table", "coordcheck", "transfer"} <= set(names)
    for name in names:
        assert f"## `muptheory {name}`" in committed
        assert f"usage: muptheory {name} " in committed


def test_every_option_string_appears_in_its_subcommand_section(commands, committed):
    for name, _, sub in commands:
        start = committed.index(f"## `muptheory {name}`")
        end = committed.find("\n## ", start + 1)
        section = committed[start : end if end != -1 else None]
        missing = [
            option
            for option in sorted(_option_strings(sub))
            if f"`{option}" not in section and f", {option}" not in section
        ]
        assert not missing, f"muptheory {name}: {missing} not in docs/cli.md"


def test_every_default_is_listed_beside_its_option(commands, committed):
    _, _, coordcheck = next(c for c in commands if c[0] == "coordcheck")
    section = committed[committed.index("## `muptheory coordcheck`") :]
    steps = next(a for a in coordcheck._actions if "--steps" in a.option_strings)
    assert f"| `--steps STEPS` | {steps.help} | {steps.default} |" in section
    assert "| `METHOD` | " in section and "| required |" in section
