"""The ``truthsteer`` command line: the only place that parses arguments.

Each sub-command lives in its own module here and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from evals.errors import InputError

# Modules under harness/cli/ that add sub-commands, in the order `truthsteer -h` lists them.
COMMAND_MODULES = (
    "generate", "dict", "directions", "sweep", "judge", "calibrate", "spotcheck", "report",
    "quickstart",
)


def input_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad user input: printed as one line, exit code 2."""
    errors: list[type[BaseException]] = [InputError, FileNotFoundError]
    try:
        from dictionaries.config import DictionaryConfigError
        errors.append(DictionaryConfigError)
    except ImportError:
        pass
    return tuple(errors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="truthsteer",
        description="Steer a model's activations towards truthfulness; judge and report it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"harness.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"harness.cli.{name}":
                continue  # that command is not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except input_errors() as err:
        message = str(err) if not isinstance(err, FileNotFoundError) else (
            f"{err.filename or err}: file not found")
        print(f"truthsteer {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"truthsteer {args.command}: interrupted (finished work is kept; rerun to resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
