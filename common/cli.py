"""One wrapper for every script's entry point: a user error becomes one line and exit code 2."""
from __future__ import annotations

import sys
from typing import Callable, Sequence


class UserError(Exception):
    """A problem with the user's input (files, arguments): reported in one line, exit code 2."""


EXIT_USER_ERROR = 2


def run_script(main: Callable, parse_args: Callable, argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run `main(args)`, and turn a UserError into `error: ...` on stderr."""
    args = parse_args(argv)
    try:
        result = main(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted: finished files are kept, partial ones were never renamed into place",
              file=sys.stderr)
        return 130
    return int(result or 0)


def script_entry(main: Callable, parse_args: Callable) -> None:
    """`if __name__ == "__main__": script_entry(main, parse_args)`."""
    sys.exit(run_script(main, parse_args))
