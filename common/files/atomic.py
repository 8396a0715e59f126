"""Atomic file writes: write to a temporary name in the same folder, then rename.

An interrupted run therefore never leaves a half-written file under the final name that a
later step (or `--resume`) would trust. A write that fails for a reason of the disk (full,
read-only, no permission, quota) is a one-line `UserError` naming the file; the old file under
the final name, if any, stays as it was, and the temporary file is removed.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from common.cli import UserError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
# The names atomic_path gives its temporary files: `.<final name>.<pid>-<random>.tmp<suffix>`.
# The leading dot hides them from list_bins and from `*` globs, so a half-written file left
# by a killed run is never read as a result; the writer's process id tells a file a running
# writer is still filling from one a killed run left behind. (Older runs wrote
# `.<final name>.<random>.tmp<suffix>`, without the process id.)
TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.(?:(?P<pid>\d+)-)?[a-z0-9_]+\.tmp(\.[^./]*)?$")
# Errors that only a write can raise: with no file name attached (a write() on an open file)
# they still name the file being written, whatever library made the call.
_WRITE_ONLY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
# The temporary files this process is writing: a signal can end the process at a point where
# no `finally` of atomic_path will run any more (a pool worker exits with os._exit), so the
# signal's handler removes these itself (remove_live_temps). Keyed by the writer's process id:
# a forked worker inherits the parent's entries, which are not its own.
_LIVE_TEMPS: dict[str, int] = {}


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `final_path`; rename it into place only on success.

    `suffix` keeps the extension some writers need to pick a format (cv2.imwrite, torch.save).
    An OSError of writing the temporary file (raised inside the block, naming that file or
    being a disk-full / read-only / quota error) or of the rename becomes a UserError naming
    `final_path`; any other exception passes through unchanged. The temporary file is removed
    on every exit but success, Ctrl-C included.
    """
    final_path = Path(final_path)
    _make_parent(final_path)
    suffix = final_path.suffix if suffix is None else suffix
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.name}.{os.getpid()}-", suffix=f".tmp{suffix}",
                                        dir=final_path.parent)
    except OSError as err:
        raise UserError(f"{final_path}: cannot write ({_reason(err)})") from None
    _LIVE_TEMPS[tmp_name] = os.getpid()
    tmp_path = Path(tmp_name)
    try:
        os.close(fd)
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 minus umask)
        # so results stay readable by the colleagues the user shares them with.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        try:
            yield tmp_path
        except OSError as err:
            if _is_write_error(err, tmp_path, final_path):
                raise UserError(f"{final_path}: cannot write ({_reason(err)})") from None
            raise
        try:
            os.replace(tmp_path, final_path)
        except OSError as err:
            raise UserError(f"{final_path}: cannot rename the finished file into place ({_reason(err)})") from None
    finally:
        with contextlib.suppress(OSError):  # a failed cleanup must not hide why the write failed
            tmp_path.unlink(missing_ok=True)
        _LIVE_TEMPS.pop(tmp_name, None)


def _make_parent(final_path: Path) -> None:
    try:
        final_path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{final_path}: cannot write (a file is in the way of the folder {final_path.parent})") from None
    except OSError as err:
        raise UserError(f"{final_path}: cannot write (cannot create the folder {final_path.parent}: "
                        f"{_reason(err)})") from None


def _is_write_error(err: OSError, tmp_path: Path, final_path: Path) -> bool:
    if err.filename is None:
        return err.errno in _WRITE_ONLY_ERRNOS
    ours = {str(p) for p in (tmp_path, final_path)} | {os.path.abspath(p) for p in (tmp_path, final_path)}
    named = {str(n) for n in (err.filename, getattr(err, "filename2", None)) if n is not None}
    return bool((named | {os.path.abspath(n) for n in named}) & ours)


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value):
    # numpy scalars and arrays show up in metric dicts; JSON needs plain Python numbers.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def is_temp_name(name: str) -> bool:
    """True for the name of an atomic_path temporary file (finished files never match)."""
    return bool(TEMP_NAME.match(name))


def remove_live_temps() -> int:
    """Delete the temporary files this process is still writing (it is being stopped by a
    signal); returns how many were there."""
    removed = 0
    for name, pid in list(_LIVE_TEMPS.items()):
        if pid != os.getpid():
            continue
        with contextlib.suppress(OSError):
            os.unlink(name)
            removed += 1
        _LIVE_TEMPS.pop(name, None)
    return removed


def _writer_alive(pid_text: str | None) -> bool:
    if pid_text is None:
        return False  # an older run's name: no process id to ask, so left by a finished or killed run
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0  # another user's live process (or an id no process can have)
    return True


def remove_stale_temps(folder: str | os.PathLike, names: Iterable[str] | None = None) -> int:
    """Delete temporary files a killed run left in `folder` (top level); return how many.

    A temporary file whose writer process still runs is kept (two runs writing into one folder
    do not break each other). `names` restricts the cleanup to the temporaries of those final
    file names: a command writing one file into a folder it shares removes only its own.
    """
    folder = Path(folder)
    wanted = None if names is None else set(names)
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for entry in entries:
        match = TEMP_NAME.match(entry.name)
        if (match is None or (wanted is not None and match["final"] not in wanted)
                or _writer_alive(match["pid"]) or not entry.is_file(follow_symlinks=False)):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed += 1
    return removed


def remove_stale_temps_of(path: str | os.PathLike) -> int:
    """Delete what a killed run left while writing `path` (its temporaries only)."""
    path = Path(path)
    return remove_stale_temps(path.parent, [path.name])
