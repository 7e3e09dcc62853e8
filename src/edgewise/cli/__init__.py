"""The ``edgewise`` command: ``attack | benchmark | minmax | exact | train | models`` (also ``python -m edgewise``).

Every subcommand takes the same option names for the same concepts (``edgewise.cli.options``, docs/cli.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from edgewise import __version__
from edgewise.data.idx import DataFileError


class UsageError(Exception):
    """A bad command-line argument: printed as one line, exit status 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default: ``(default: X)``, unless the help says it in its own words
    (``default:`` already in the text, e.g. for a default of None that means "the attack's own")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default:" in text or action.nargs == 0 or action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse that shows defaults in --help, takes no abbreviations, reports a bad argument in one line
    (exit status 2), and records in ``args.given`` which options the command line gave explicitly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        tokens = list(sys.argv[1:] if args is None else args)
        parsed, rest = super().parse_known_args(tokens, namespace)
        given = {action.dest for action in self._actions for option in action.option_strings
                 if any(token == option or token.startswith(option + "=") for token in tokens)}
        parsed.given = sorted(given | set(getattr(parsed, "given", ())))
        return parsed, rest


def csv(kind: Callable[[str], object]) -> Callable[[str], list[object]]:
    """An argparse type for comma-separated lists: ``--steps 100,1000``."""

    def parse(text: str) -> list[object]:
        try:
            return [kind(part) for part in text.split(",") if part]
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"invalid list {text!r}: {error}") from error

    return parse


def folder(text: str) -> str:
    """An argparse type for an output folder: a path that does not exist or is a folder (not a file)."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, expected a folder (a new one, or an earlier run's)")
    return text


def build_parser() -> Parser:
    from edgewise.cli import attack, benchmark, exact, minmax, models, train

    parser = Parser(prog="edgewise", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edgewise {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (attack, benchmark, train, models, minmax, exact):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad arguments or inputs, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        status: int = args.run(args)
    except (UsageError, ValueError, TypeError, DataFileError, OSError) as error:
        message = " ".join(str(error).split())
        print(f"edgewise: error: {message}".replace("edgewise: error: edgewise", "edgewise"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgewise: interrupted; finished batches are saved under --out, run the same command again to "
              "resume", file=sys.stderr)
        return 130
    return status
