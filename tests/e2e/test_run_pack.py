"""Each pack's run_pack.sh --quick (what run_all.sh runs): every README step end to end.

Slow-ish (a few minutes for the five packs) but it is the main job users run: a flag that a
script no longer accepts, or a step that writes its output elsewhere, only shows up here. The
models the run exported are checked as well: every export and graph fix declares its outputs'
static dimensions, those the pack config gives, and ONNX Runtime returns exactly those shapes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from pathlib import Path

import numpy as np
import onnx
import pytest

from common.pipeline.pack_config import StepValues, render
from common.pipeline.packs import PACK_NAMES, REPO_ROOT, pack_config
from common.runtime.onnxruntime_backend import OnnxRuntimeBackend

pytestmark = pytest.mark.slow


CLASS_OUTPUT_PACKS = {pack for pack in PACK_NAMES if pack_config(pack).compare == "classes"}

# These two run as `--data-root DIR` does on real files: the dataset is written first in the real
# layout at sizes that are not the quick input size (full-size-like frames; VOC's odd sizes, the
# guides' data/voc/ folder, one grayscale JPEG), and the run reads it through its dataset view
# (resized copies of the first images). They are the packs whose model input follows the image
# size, where real files once tripped a quick run.
REAL_LAYOUT_DATA = {"3D_HRNet": 4, "Wseg": 3}


def write_user_dataset(pack: str, root: Path) -> None:
    from common.data.synth.cityscapes import write_synthetic_cityscapes
    from common.data.synth.voc import write_synthetic_voc
    count = REAL_LAYOUT_DATA[pack]
    if pack_config(pack).dataset == "cityscapes":
        write_synthetic_cityscapes(root, count=count, size_hw=(256, 512), seed=4)
    else:
        write_synthetic_voc(root / "voc", count=count, seed=4, sizes_hw=((375, 500), (500, 333), (281, 500)),
                            grayscale=(1,))


def declared_shapes(model: onnx.ModelProto) -> list[list]:
    return [[d.dim_param if d.HasField("dim_param") else d.dim_value
             for d in out.type.tensor_type.shape.dim] for out in model.graph.output]


def check_declared_against_runtime(path: Path, per_sample: list[tuple[int, ...]]) -> None:
    declared = declared_shapes(onnx.load(str(path), load_external_data=False))
    for shape, expected in zip(declared, per_sample, strict=True):
        # Every axis but a dynamic batch axis has a size, not a name left by the tracer.
        assert isinstance(shape[0], int) or shape[0] == "batch_size", (path.name, declared)
        assert shape[1:] == list(expected), (path.name, declared, per_sample)
    backend = OnnxRuntimeBackend(path)
    feeds = {spec.name: np.zeros((1, *spec.shape[1:]), dtype=spec.dtype) for spec in backend.input_specs()}
    returned = [list(out.shape) for out in backend.run(feeds)]
    assert returned == [[1, *shape] for shape in per_sample], (path.name, declared, returned)


def check_exported_models(pack: str, work: Path) -> None:
    """The ONNX file of every export and graph-fix step of the run (the names its templates give)."""
    config = pack_config(pack)
    fields = StepValues(py="python3", work=str(work.resolve()), data="", weights="",
                        input_hw=config.quick.input_hw, count=1).fields(config)
    steps = [*config.steps_of("export"), *config.steps_of("fix")]
    assert steps, pack
    for step in steps:
        written = Path([arg for arg in render(step.argv, fields) if arg.endswith(".onnx")][-1])
        check_declared_against_runtime(written, config.output_shapes(config.quick.input_hw))


@pytest.mark.parametrize("pack", PACK_NAMES)
def test_run_pack_quick_runs_every_step_and_the_backends_agree(pack, tmp_path):
    work = tmp_path / pack
    env = dict(os.environ, PY=sys.executable)
    data_arguments = []
    if pack in REAL_LAYOUT_DATA:
        write_user_dataset(pack, tmp_path / "user_data")
        data_arguments = ["--data-root", str(tmp_path / "user_data")]
    result = subprocess.run(["bash", str(REPO_ROOT / pack / "run_pack.sh"), str(work), "--quick", *data_arguments],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    row = json.loads((work / "summary_row.json").read_text())
    assert row["pack"] == pack and row["images"] >= 1
    # quick sizes: ONNX Runtime reproduces PyTorch within the fp32 tolerances (a near-tied pixel
    # may flip on another CPU; the verdict's tolerance allows for it, nothing more)
    assert row["verdict"] == "agree", row
    if pack in REAL_LAYOUT_DATA:
        quick = pack_config(pack).quick
        assert row["images"] == quick.images < REAL_LAYOUT_DATA[pack], row
        assert row["data"].startswith(str((tmp_path / "user_data").resolve())), row
        assert f"first {quick.images} images" in row["data"] and "resized copies" in row["data"], row
    else:
        assert row["data"].startswith("synthetic"), row
    assert row["weights"].startswith("demo (random values"), row
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
    check_exported_models(pack, work)
    assert not (work / "fp16_keep").exists()  # the shipped keep lists hold for the guide-size graph only
