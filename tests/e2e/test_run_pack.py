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

from common.pipeline.packs import PACK_NAMES, REPO_ROOT, pack_config

pytestmark = pytest.mark.slow


CLASS_OUTPUT_PACKS = {pack for pack in PACK_NAMES if pack_config(pack).compare == "classes"}


@pytest.mark.parametrize("pack", PACK_NAMES)
def test_run_pack_quick_runs_every_step_and_the_backends_agree(pack, tmp_path):
    work = tmp_path / pack
    env = dict(os.environ, PY=sys.executable)
    result = subprocess.run(["bash", str(REPO_ROOT / pack / "run_pack.sh"), str(work), "--quick"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    row = json.loads((work / "summary_row.json").read_text())
    assert row["pack"] == pack and row["images"] >= 1
    # quick sizes: ONNX Runtime reproduces PyTorch within the fp32 tolerances (a near-tied pixel
    # may flip on another CPU; the verdict's tolerance allows for it, nothing more)
    assert row["verdict"] == "agree", row
    assert row["data"].startswith("synthetic") and row["weights"].startswith("demo (random values")
    assert f"{pack}: agree" in result.stdout  # the verdict is printed too
    if pack in CLASS_OUTPUT_PACKS:
        assert row["parity_max_rel"] < 1e-4, row
    else:
        assert row["detections"]["fraction_matched"] == 1.0, row
    if pack in CLASS_OUTPUT_PACKS:  # pictures of both runs, compared (what report.html shows)
        shown = {run: sorted(p.name for p in (work / "show" / run).glob("*_classes.png"))
                 for run in ("pytorch", "onnxruntime")}
        assert shown["pytorch"] == shown["onnxruntime"] and len(shown["pytorch"]) == row["images"]
        compared = json.loads((work / "disagreement" / "disagreement.json").read_text())
        assert compared["pixels"] > 0 and compared["fraction"] < 1e-4, compared
    else:
        assert sorted((work / "det_pytorch" / "show").glob("*.jpg"))
