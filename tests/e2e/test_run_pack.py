"""Each pack's run_pack.sh --quick (what run_all.sh runs): every README step end to end.

Slow-ish (about 3 minutes for the five packs) but it is the main job users run: a flag that a
script no longer accepts, or a step that writes its output elsewhere, only shows up here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from common.pipeline.packs import PACK_NAMES, REPO_ROOT

pytestmark = pytest.mark.slow


# --classes given to pack_summary in each run_pack.sh: packs whose outputs are class scores
CLASS_OUTPUT_PACKS = {"RefineNet", "3D_HRNet", "PointRend", "Wseg"}


@pytest.mark.parametrize("pack", PACK_NAMES)
def test_run_pack_quick_runs_every_step_and_the_backends_agree(pack, tmp_path):
    work = tmp_path / pack
    env = dict(os.environ, PY=sys.executable)
    result = subprocess.run(["bash", str(REPO_ROOT / pack / "run_pack.sh"), str(work), "--quick"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    row = json.loads((work / "summary_row.json").read_text())
    assert row["pack"] == pack and row["status"] == "ok" and row["images"] >= 1
    # quick sizes: ONNX Runtime reproduces PyTorch (see each pack's parity tests for the bounds)
    assert row["parity_max_rel"] < 1e-4, row
    assert abs(row["difference"]) < 1e-6, row
    if pack in CLASS_OUTPUT_PACKS:
        assert row["parity_class_mismatch"] == 0.0, row
    else:
        assert row["parity_class_mismatch"] is None
    assert f"| {pack} | onnxruntime |" in result.stdout  # the summary row is printed too
    if pack in CLASS_OUTPUT_PACKS:  # pictures of both runs, compared (what report.html shows)
        shown = {run: sorted(p.name for p in (work / "show" / run).glob("*_classes.png"))
                 for run in ("pytorch", "onnxruntime")}
        assert shown["pytorch"] == shown["onnxruntime"] and len(shown["pytorch"]) == row["images"]
        compared = json.loads((work / "disagreement" / "disagreement.json").read_text())
        assert compared["pixels"] > 0 and compared["fraction"] < 1e-4, compared
    else:
        assert sorted((work / "det_pytorch" / "show").glob("*.jpg"))
