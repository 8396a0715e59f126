"""One wrapper for every script's entry point: a user error becomes one line and exit code 2,
Ctrl-C one line and exit code 130.

Ctrl-C is covered from the moment this module is imported, which is why every script imports
`common` before its third-party modules (torch takes seconds to import): a KeyboardInterrupt
that reaches the top level before `main` runs (imports, argument parsing) is reported by the
excepthook set here; one inside `main` by `run_script`, after the `finally` blocks on the way
up (atomic_path's among them) have removed the temporary files. A second Ctrl-C while that
cleanup runs is ignored, so it cannot cut the cleanup short.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Callable, Sequence


class UserError(Exception):
    """A problem with the user's input (files, arguments): reported in one line, exit code 2."""


class ChildInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a child command that reported it in its own line: exit 130, no second line."""


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
INTERRUPTED_LINE = "interrupted: finished files are kept, partial ones were never renamed into place"


def doc_parser(doc: str, epilog_after: int = 1) -> argparse.ArgumentParser:
    """A parser whose description is the script docstring's first paragraph and whose epilog,
    printed as written, is the docstring after its first `epilog_after` paragraphs."""
    paragraphs = doc.split("\n\n", epilog_after)
    return argparse.ArgumentParser(description=paragraphs[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=paragraphs[epilog_after] if len(paragraphs) > epilog_after else None)


def run_script(main: Callable, parse_args: Callable, argv: Sequence[str] | None = None,
               exiting: bool = False) -> int:
    """Parse arguments, run `main(args)`, and turn a UserError into `error: ...` on stderr.

    `exiting`: the process ends with the returned code (script_entry), so after a Ctrl-C further
    ones stay ignored up to the exit; in-process callers (tests) get their SIGINT handler back."""
    args = parse_args(argv)
    previous_handler = _interrupt_once()
    interrupted = False
    try:
        result = main(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as err:
        interrupted = True
        from common.files.atomic import remove_live_temps  # not at the top: atomic imports this module
        remove_live_temps()  # any a suspended writer has not removed on the way up
        if not isinstance(err, ChildInterrupted):
            print(INTERRUPTED_LINE, file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous_handler is not None and not (interrupted and exiting):
            signal.signal(signal.SIGINT, previous_handler)
    return int(result or 0)


def script_entry(main: Callable, parse_args: Callable) -> None:
    """`if __name__ == "__main__": script_entry(main, parse_args)`."""
    sys.exit(run_script(main, parse_args, exiting=True))


def _raise_once(signum, frame) -> None:
    # The first Ctrl-C unwinds the work (finally blocks remove temporary files); later ones
    # are ignored until run_script has reported it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _interrupt_once():
    """Install _raise_once for SIGINT (main thread only); return the handler to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # started in the background (nohup, `&` in a script): keep it so
        return None
    signal.signal(signal.SIGINT, _raise_once)
    return previous


def _report_interrupt_before_main(exc_type, exc, traceback) -> None:
    """sys.excepthook: Ctrl-C during the imports or the argument parsing is one line, exit 130.
    (Not in an interactive session, where Ctrl-C only stops the statement.)"""
    interactive = sys.flags.interactive or hasattr(sys, "ps1")
    if issubclass(exc_type, KeyboardInterrupt) and not interactive:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        sys.stderr.write(INTERRUPTED_LINE + "\n")
        sys.stderr.flush()
        # Nothing was written yet; os._exit rather than a re-raise, which would end the process
        # by SIGINT (no exit code 130) after printing nothing more useful.
        os._exit(EXIT_INTERRUPTED)
    _previous_excepthook(exc_type, exc, traceback)


_previous_excepthook = sys.excepthook
if sys.excepthook is sys.__excepthook__:  # leave an interactive shell's own hook alone
    sys.excepthook = _report_interrupt_before_main


# ---- child commands (run_pack's steps, run_all's packs) ----------------------------------------

def wait_for_child(process, grace_s: float = 2.0, timeout_s: float = 60.0) -> int:
    """After Ctrl-C: let a child command stop by itself (a terminal's Ctrl-C reached it too) and
    clean up; forward SIGINT if it is still running after `grace_s` (only this process was
    signalled); kill it after `timeout_s`. Returns its exit code."""
    import subprocess

    try:
        return process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def interrupted_child(code: int) -> KeyboardInterrupt:
    """The exception to raise once an interrupted child has exited with `code`: silent when the
    child said so itself (exit 130), the parent's line otherwise."""
    return ChildInterrupted() if code == EXIT_INTERRUPTED else KeyboardInterrupt()
