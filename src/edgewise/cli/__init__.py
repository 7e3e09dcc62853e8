"""The ``edgewise`` command: ``attack | benchmark | minmax | train | models`` (also ``python -m edgewise``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from edgewise import __version__
from edgewise.data.idx import DataFileError


class UsageError(Exception):
    """A bad command-line argument: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line and exits with status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def csv(kind: Callable[[str], object]) -> Callable[[str], list[object]]:
    """An argparse type for comma-separated lists: ``--steps 100,1000``."""

    def parse(text: str) -> list[object]:
        try:
            return [kind(part) for part in text.split(",") if part]
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"invalid list {text!r}: {error}") from error

    return parse


def build_parser() -> Parser:
    from edgewise.cli import attack, benchmark, exact, minmax, models, train

    parser = Parser(prog="edgewise", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edgewise {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (attack, benchmark, train, models, minmax, exact):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad arguments or inputs)."""
    try:
        args = build_parser().parse_args(argv)
        status: int = args.run(args)
    except (UsageError, ValueError, TypeError, DataFileError) as error:
        print(f"edgewise: error: {error}".replace("edgewise: error: edgewise", "edgewise"), file=sys.stderr)
        return 2
    except OSError as error:
        print(f"edgewise: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgewise: interrupted; finished work is saved, run the same command again to resume",
              file=sys.stderr)
        return 130
    return status
