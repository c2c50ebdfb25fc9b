"""Write docs/cli.md: the command-line reference, read off the argparse parser.

The page has one section per sub-command, in the order ``muptheory --help`` lists
them: the usage line, the description, every option grouped by argparse argument
group with its help text and default, and the epilog. Nothing is typed by hand, so
an option added to ``muptheory.cli`` appears here the next time this script runs:

    python derivations/cli_reference.py

The output does not depend on the terminal: usage lines are wrapped at a fixed
width, and option invocations and defaults are formatted here rather than by the
running Python's argparse. ``tests/test_docs.py`` regenerates the page in memory and
fails when the committed file differs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from muptheory.cli import build_parser
from muptheory.io import atomic_write_text

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
COMMAND = "python derivations/cli_reference.py"
USAGE_WIDTH = 88

HEADER = f"""\
# Command-line reference

This page is generated from the parser by `{COMMAND}`;
edit the parser in `muptheory/cli/` and rerun the script, not this file. The user
guide, [guide.md](guide.md), shows the commands at work.

Every command prints one line on stderr and exits with code 2 when its input is
wrong (an unknown method, a malformed exponent, an unwritable output path).
"""


class _FixedWidthFormatter(argparse.RawDescriptionHelpFormatter):
    """The sub-commands' formatter with the width pinned, whatever COLUMNS says."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=USAGE_WIDTH)


def render_cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The Markdown text of docs/cli.md for ``parser`` (default: the CLI's own).

    Args:
        parser: a parser built like ``muptheory.cli.build_parser()``, whose
            sub-commands are one ``add_subparsers`` action.

    Returns:
        The page, ending in one newline.
    """
    parser = parser or build_parser()
    commands = list(subcommands(parser))
    parts = [HEADER, *_section(parser, level=2, title=f"`{parser.prog}`")]
    parts.append(_command_table(commands))
    for name, _, sub in commands:
        parts.extend(_section(sub, level=2, title=f"`{parser.prog} {name}`"))
    return "\n".join(parts).rstrip("\n") + "\n"


def subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, str | None, argparse.ArgumentParser]]:
    """Yield (name, one-line help, parser) of each sub-command, in --help order.

    argparse keeps sub-commands on a private action class; this is the one place
    that reaches into it.
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        seen: set[int] = set()
        for name, sub in action.choices.items():
            if id(sub) in seen:  # an alias of a command already listed
                continue
            seen.add(id(sub))
            yield name, helps.get(name), sub


def _section(parser: argparse.ArgumentParser, *, level: int, title: str) -> list[str]:
    """Title, description, usage, option groups and epilog of one parser."""
    parts = [f"{'#' * level} {title}\n"]
    if parser.description:
        parts.append(f"{_text(parser.description)}\n")
    parts.append(f"```text\n{_usage(parser)}\n```\n")
    for group in parser._action_groups:
        actions = [
            a
            for a in group._group_actions
            if a.help is not argparse.SUPPRESS
            and not isinstance(a, argparse._SubParsersAction)
        ]
        if not actions:
            continue
        parts.append(f"{'#' * (level + 1)} {group.title}\n")
        if group.description:
            parts.append(f"{_text(group.description)}\n")
        parts.append(_options_table(parser, actions))
    if parser.epilog:
        parts.append(f"```text\n{parser.epilog.strip(chr(10))}\n```\n")
    return parts


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = _FixedWidthFormatter(parser.prog)
    formatter.add_usage(
        parser.usage, parser._actions, parser._mutually_exclusive_groups
    )
    return formatter.format_help().strip()


def _command_table(
    commands: list[tuple[str, str | None, argparse.ArgumentParser]],
) -> str:
    rows = ["| command | what it does |", "| --- | --- |"]
    for name, summary, sub in commands:
        anchor = sub.prog.replace(" ", "-")
        rows.append(f"| [`{name}`](#{anchor}) | {_cell(summary or '')} |")
    return "### Commands\n\n" + "\n".join(rows) + "\n"


def _options_table(parser: argparse.ArgumentParser, actions) -> str:
    rows = ["| argument | help | default |", "| --- | --- | --- |"]
    for action in actions:
        rows.append(
            f"| `{_cell(invocation(action))}` | {_cell(_help(parser, action))} "
            f"| {_cell(default_text(action))} |"
        )
    return "\n".join(rows) + "\n"


# -- formatting one argument --------------------------------------------------------


def invocation(action: argparse.Action) -> str:
    """How the argument is written: ``--widths M [M ...]``, ``-h, --help``, ``METHOD``."""
    if not action.option_strings:
        return _metavars(action, action.dest)[0]
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    return ", ".join(action.option_strings) + " " + _value_syntax(action)


def _value_syntax(action: argparse.Action) -> str:
    names = _metavars(action, action.dest.upper())
    nargs = action.nargs
    if nargs is None:
        return names[0]
    if nargs == "?":
        return f"[{names[0]}]"
    if nargs == "*":
        return f"[{names[0]} ...]"
    if nargs == "+":
        return f"{names[0]} [{names[0]} ...]"
    if isinstance(nargs, int):
        if len(names) == nargs:
            return " ".join(names)
        return " ".join([names[0]] * nargs)
    raise NotImplementedError(
        f"nargs={nargs!r} is not supported: no sub-command uses it"
    )


def _metavars(action: argparse.Action, fallback: str) -> list[str]:
    if isinstance(action.metavar, tuple):
        return list(action.metavar)
    if action.metavar is not None:
        return [action.metavar]
    if action.choices is not None:
        return ["{" + ",".join(str(c) for c in action.choices) + "}"]
    return [fallback]


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text with argparse's %(...)s fields filled in."""
    text = action.help or ""
    if "%(" not in text:
        return text
    fields = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    if action.choices is not None:
        fields["choices"] = ", ".join(str(c) for c in action.choices)
    return text % {**fields, "prog": parser.prog}


def default_text(action: argparse.Action) -> str:
    """The default as a reader would type it; ``required`` or ``-`` where none."""
    if action.required:
        return "required"
    default = action.default
    if action.nargs == 0 or default is None or default is argparse.SUPPRESS:
        return "-"
    if isinstance(default, list | tuple):
        return " ".join(str(v) for v in default) or "-"
    return str(default)


def _text(text: str) -> str:
    """A description or help paragraph, with its own line breaks kept."""
    return text.strip()


def _cell(text: str) -> str:
    """Text safe inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    import argparse

    # no options; parsing still answers --help (and rejects strays) before writing
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    atomic_write_text(OUTPUT, render_cli_reference())
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
