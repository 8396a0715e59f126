"""Every export declares its outputs' static dimensions (only the batch axis symbolic, where the
batch is dynamic), the graph fixes keep them, they are the shapes the pack config gives, and
ONNX Runtime returns exactly those shapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from common.pipeline.pack_config import StepValues, render
from common.pipeline.packs import PACK_NAMES, pack_config, pack_module
from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
from helpers import run_script

pytestmark = pytest.mark.slow


# Small input sizes every pack accepts (PointRend: multiples of 32).
TEST_HW = {"RefineNet": (64, 64), "3D_HRNet": (64, 128), "PointRend": (64, 128), "Wseg": (64, 64),
           "MaskRCNN_mmdet": (64, 64)}


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


@pytest.mark.parametrize("pack", PACK_NAMES)
def test_declared_output_shapes_are_static_and_what_onnx_runtime_returns(pack, tmp_path):
    config = pack_config(pack)
    checkpoint = tmp_path / config.weights_file
    pack_module(pack, "model").write_demo_checkpoint(checkpoint)
    fields = StepValues(py="python3", work=str(tmp_path), data=str(tmp_path), weights=str(checkpoint),
                        input_hw=TEST_HW[pack], count=1).fields(config)
    per_sample = config.output_shapes(TEST_HW[pack])
    for step in [*config.steps_of("export"), *config.steps_of("fix")]:
        argv = render(step.argv, fields)
        run_script(pack, *argv)
        written = Path([arg for arg in argv if arg.endswith(".onnx")][-1])  # the file the step writes
        check_declared_against_runtime(written, per_sample)
