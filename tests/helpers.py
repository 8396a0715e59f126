"""Helpers the tests share: running pack scripts as a user would, reading their one-line errors,
comparing two engines' class scores."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_script(pack: str | None, script: str, *args, check: bool = True) -> subprocess.CompletedProcess:
    """Run a pack script (or `-m module` when pack is None) the way a user would."""
    cwd = REPO_ROOT / pack if pack else REPO_ROOT
    command = [sys.executable, *( [script] if pack else ["-m", script] ), *map(str, args)]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line]


def run_cli(module, *argv, capsys) -> tuple[int, list[str]]:
    """Exit code and the non-progress stderr lines of a script run in-process."""
    from common import cli
    code = cli.run_script(module.main, module.parse_args, [str(a) for a in argv])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip() and "%|" not in line]


def expect_one_line(code: int, lines: list[str], *fragments: str) -> str:
    """Assert a user error: exit code 2 and exactly one stderr line holding every fragment."""
    assert code == 2, lines
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_classes_agree(reference, candidate, rel_tol: float = 1e-4,
                         max_flip_fraction: float = 1e-3) -> int:
    """Two engines' class scores (class axis first) agree: values within `rel_tol` of the
    reference's range, and the argmax differs only where the reference's two best classes are
    within twice that bound of each other (a near-tie, which the engines' kernels may resolve
    either way on another CPU) and at no more than `max_flip_fraction` of the positions.
    Returns how many positions flipped."""
    import numpy as np
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    bound = rel_tol * float(reference.max() - reference.min())
    assert np.abs(reference - candidate).max() <= bound, "values differ beyond the tolerance"
    flipped = reference.argmax(0) != candidate.argmax(0)
    top_two = np.sort(reference, axis=0)[-2:]
    gap = top_two[1] - top_two[0]
    assert (gap[flipped] <= 2 * bound).all(), "the class changed where the reference is not near-tied"
    assert flipped.mean() <= max_flip_fraction, f"{int(flipped.sum())} positions changed class"
    return int(flipped.sum())


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder` (hidden temporary ones included) with a hash of its bytes: a
    refused run must leave this unchanged."""
    import hashlib
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def voc_root(parent: Path) -> Path:
    """VOC2012 inside a VOCdevkit parent folder."""
    return parent / "VOCdevkit" / "VOC2012"
