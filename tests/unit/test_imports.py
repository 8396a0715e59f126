"""What must not import torch does not: the runner, the graph fixes, ATC, the configs and the
pre/postprocess scripts start fast and fork their workers (only export, the PyTorch reference
and the model files need torch). One subprocess for all, so the check is what a user's run sees."""
from __future__ import annotations

import subprocess
import sys

from common.pipeline.packs import PACK_NAMES, PACKAGES, REPO_ROOT

COMMANDS = ["common.infer", "common.atc", "common.precision", "common.pack_summary", "common.collect_summary",
            "common.run_pack", "common.run_all", "common.synth", "common.disagreement", "common.html_report",
            "common.info_cli"]
PACK_SCRIPTS = {
    "RefineNet": ["RefineNet_preprocess", "RefineNet_postprocess", "get_info"],
    "3D_HRNet": ["HRNet_preprocess", "HRNet_postprocess", "performance_optimize_resize", "resize_edit_report"],
    "PointRend": ["PointRend_preprocess", "PointRend_postprocess"],
    "Wseg": ["wseg_preprocess", "eval_seg", "fix_softmax_transpose"],  # wseg_postprocess upsamples with torch
    "MaskRCNN_mmdet": ["mmdet_preprocess", "mmdet_postprocess", "label_to_int32", "get_info"],
}
TORCH_FREE = COMMANDS + [f"{PACKAGES[pack]}.config" for pack in PACK_NAMES] + [
    f"{PACKAGES[pack]}.{script}" for pack, scripts in PACK_SCRIPTS.items() for script in scripts]


def test_runner_fixes_configs_and_scripts_do_not_import_torch():
    probe = ("import importlib, sys\n"
             "bad = [m for m in sys.argv[1:] if importlib.import_module(m) and 'torch' in sys.modules]\n"
             "print(' '.join(bad))")
    # Modules are imported one after another; the first that pulls torch in is named.
    result = subprocess.run([sys.executable, "-c", probe, *TORCH_FREE], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[:1] == [], f"imports torch: {result.stdout.split()[0]}"


def test_a_module_that_imports_torch_is_caught():
    probe = "import importlib, sys; importlib.import_module(sys.argv[1]); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe, "refinenet.model"], capture_output=True, text=True,
                            cwd=REPO_ROOT)
    assert result.stdout.strip() == "True"
