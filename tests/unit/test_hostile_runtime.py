"""Issue 14 (reliability, round 2): the runner, writes and interrupts.

Every case gives exit code 2 and one line naming the file (and tensor) and what is wrong, or,
where the input is valid but odd, does the right thing and says so in one line; Ctrl-C gives one
line and exit code 130 and leaves no temporary file. Each case also checks that the files an
earlier run left are unchanged (hash of the folder before and after).

Models are tiny ONNX graphs built here with onnx.helper (no pack export). Full disks and
read-only folders are real where the kernel allows it without privileges: /dev/full behind the
temporary name in-process, and a size-limited tmpfs or a read-only bind mount inside a user
namespace (`unshare`, skipped where not available) for the subprocess cases.
"""
from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

from common import cli
from common.cli import UserError
from common.files import atomic
from common.files.atomic import atomic_path, is_temp_name, remove_stale_temps, write_json_atomic
from common.files.bins import write_bin
from common.files.folders import output_file_parent, output_folder
from common.runtime import runner
from helpers import snapshot, REPO_ROOT, error_lines, expect_one_line, run_cli

infer_py = importlib.import_module("common.infer")
label_to_int32_py = importlib.import_module("maskrcnn_mmdet.label_to_int32")
fix_softmax_py = importlib.import_module("wseg.fix_softmax_transpose")
refinenet_post_py = importlib.import_module("refinenet.RefineNet_postprocess")
PY = sys.executable


# ---- helpers --------------------------------------------------------------------------------

def hidden_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*")) if root.exists() else []


def earlier_run(out: Path) -> dict[str, str]:
    """Files a previous run left in the result folder and beside it; returns their hashes."""
    write_bin(out / "r" / "earlier_0.bin", np.arange(7, dtype=np.float32))
    write_json_atomic(out / "r_summary.json", {"samples": 1})
    return snapshot(out)


def save_model(path: Path, nodes, inputs, outputs, initializers=(), opset: int = 13) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def identity_model(path: Path, elem_type=TensorProto.FLOAT, sample=(3, 4, 5)) -> Path:
    return save_model(path, [helper.make_node("Identity", ["x"], ["y"])],
                      [helper.make_tensor_value_info("x", elem_type, ["N", *sample])],
                      [helper.make_tensor_value_info("y", elem_type, ["N", *sample])])


def batch_reducing_model(path: Path, sample=(4,), keep_sample_axes: bool = True) -> Path:
    """y = mean of x over the batch axis (no batch axis left), or over every axis (a scalar)."""
    attrs = {"axes": [0]} if keep_sample_axes else {}
    return save_model(path, [helper.make_node("ReduceMean", ["x"], ["y"], keepdims=0, **attrs)],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *sample])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(sample) if keep_sample_axes else [])])


def slow_model(path: Path, side: int = 48, channels: int = 32, depth: int = 6) -> Path:
    """A chain of 3x3 convolutions: a few ms per sample, for the Ctrl-C tests."""
    rng = np.random.default_rng(0)
    nodes, inits, previous, width = [], [], "x", 3
    for layer in range(depth):
        weight = numpy_helper.from_array((rng.standard_normal((channels, width, 3, 3)) * 0.1).astype(np.float32),
                                         f"w{layer}")
        inits.append(weight)
        out = "y" if layer == depth - 1 else f"h{layer}"
        nodes.append(helper.make_node("Conv", [previous, f"w{layer}"], [out], pads=[1, 1, 1, 1]))
        previous, width = out, channels
    return save_model(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, side, side])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, side, side])], inits)


def write_inputs(folder: Path, count: int, sample=(3, 4, 5), dtype=np.float32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for index in range(count):
        array = (rng.standard_normal(sample) * 50).astype(dtype)
        write_bin(folder / f"s{index}.bin", array)
        arrays.append(array)
    return arrays


def infer(capsys, model: Path, inputs, out: Path, *extra) -> tuple[int, list[str]]:
    return run_cli(infer_py, "--model", model, "--input", inputs, "--output", out, "--output_dirname", "r",
                   *extra, capsys=capsys)


@pytest.fixture(scope="module")
def float_model(tmp_path_factory) -> Path:
    return identity_model(tmp_path_factory.mktemp("m") / "m.onnx")


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


needs_unshare = pytest.mark.skipif(not _unshare_works(), reason="no user namespaces (unshare) here")


# ---- the runner: dtypes ----------------------------------------------------------------------

INTEGER_AND_OTHER_TYPES = [
    (TensorProto.INT8, np.int8), (TensorProto.INT16, np.int16), (TensorProto.UINT16, np.uint16),
    (TensorProto.INT32, np.int32), (TensorProto.UINT32, np.uint32), (TensorProto.INT64, np.int64),
    (TensorProto.UINT64, np.uint64), (TensorProto.UINT8, np.uint8), (TensorProto.FLOAT16, np.float16),
    (TensorProto.DOUBLE, np.float64), (TensorProto.BOOL, np.bool_),
]


@pytest.mark.parametrize("elem_type, dtype", INTEGER_AND_OTHER_TYPES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_numeric_input_dtype_runs_and_round_trips(tmp_path, capsys, elem_type, dtype):
    model = identity_model(tmp_path / "m.onnx", elem_type, (2, 3))
    arrays = write_inputs(tmp_path / "in", 2, (2, 3), dtype)
    code, lines = infer(capsys, model, tmp_path / "in", tmp_path / "out")
    assert code == 0 and lines == [], lines
    for index, array in enumerate(arrays):
        got = np.fromfile(tmp_path / "out" / "r" / f"s{index}_0.bin", dtype).reshape(2, 3)
        np.testing.assert_array_equal(got, array)


def test_int16_bins_written_as_float32_are_named(tmp_path, capsys):
    model = identity_model(tmp_path / "m.onnx", TensorProto.INT16, (2, 3))
    write_inputs(tmp_path / "in", 1, (2, 3), np.float32)
    before = earlier_run(tmp_path / "out")
    code, lines = infer(capsys, model, tmp_path / "in", tmp_path / "out")
    expect_one_line(code, lines, f"{tmp_path}/in/s0.bin: 24 bytes, expected 12 for input 'x' of m.onnx (int16 (2, 3))",
                    "the file holds 6 values of 4 byte(s) each, the model wants int16")
    assert snapshot(tmp_path / "out") == before


@pytest.mark.parametrize("elem_type, name", [(TensorProto.BFLOAT16, "bfloat16"), (TensorProto.STRING, "string")])
def test_input_types_raw_bins_cannot_hold_are_refused(tmp_path, capsys, elem_type, name):
    model = identity_model(tmp_path / "m.onnx", elem_type, (2,))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "s0.bin").write_bytes(b"\0" * 4)
    before = earlier_run(tmp_path / "out")
    code, lines = infer(capsys, model, tmp_path / "in", tmp_path / "out")
    expect_one_line(code, lines, f"{model}: input 'x' is of type {name}, which a raw bin cannot hold")
    assert snapshot(tmp_path / "out") == before


DTYPES = st.sampled_from([np.float32, np.float16, np.float64, np.int8, np.int16, np.uint16, np.int32, np.int64,
                          np.uint8, np.bool_])
ONNX_TYPE = {np.dtype(np_type): onnx_type for onnx_type, np_type in INTEGER_AND_OTHER_TYPES}
ONNX_TYPE[np.dtype(np.float32)] = TensorProto.FLOAT


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=DTYPES, sample=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
       count=st.integers(1, 5), batch=st.integers(1, 8), file_dtype=DTYPES)
def test_random_dtypes_shapes_and_batches_give_the_inputs_back_or_one_line(capsys, dtype, sample, count, batch,
                                                                          file_dtype):
    """Identity models of random dtype and sample shape: bins of the model's dtype come back
    byte for byte at any --batchsize; bins of another item size are one line naming the file."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model = identity_model(root / "m.onnx", ONNX_TYPE[np.dtype(dtype)], sample)
        if np.dtype(file_dtype).itemsize == np.dtype(dtype).itemsize:
            file_dtype = dtype  # raw bins of one item size are told apart by nobody
        arrays = write_inputs(root / "in", count, sample, file_dtype)
        code, lines = run_cli(infer_py, "--model", model, "--input", root / "in", "--output", root / "out",
                              "--output_dirname", "r", "--batchsize", batch, capsys=capsys)
        if np.dtype(file_dtype).itemsize != np.dtype(dtype).itemsize:
            expect_one_line(code, lines, f"{root}/in/s0.bin: ", f"for input 'x' of m.onnx ({np.dtype(dtype).name}")
            assert not list((root / "out").rglob("*.bin"))
            return
        assert code == 0
        assert lines == ([] if batch <= count else
                         [f"[WARNING] --batchsize {batch} is more than the {count} sample(s): batch {count} "
                          "(a larger one would only pad it with copies)"])
        for index, array in enumerate(arrays):
            assert (root / "out" / "r" / f"s{index}_0.bin").read_bytes() == array.tobytes()
        summary = json.loads((root / "out" / "r_summary.json").read_text())
        assert summary["batchsize"] == min(batch, count) and summary["samples"] == count


# ---- the runner: outputs without a batch axis ---------------------------------------------------

def test_output_without_batch_axis_is_refused_before_any_write(tmp_path, capsys):
    model = batch_reducing_model(tmp_path / "nobatch.onnx", (4,))
    write_inputs(tmp_path / "in", 3, (4,))
    before = earlier_run(tmp_path / "out")
    code, lines = infer(capsys, model, tmp_path / "in", tmp_path / "out")
    expect_one_line(code, lines, f"{model}: output 'y' has shape (4,) for a batch of 1: its first axis is not "
                                 "the batch axis, so it cannot be cut into one file per sample")
    assert snapshot(tmp_path / "out") == before


def test_scalar_output_is_refused(tmp_path, capsys):
    model = batch_reducing_model(tmp_path / "scalar.onnx", (4,), keep_sample_axes=False)
    write_inputs(tmp_path / "in", 2, (4,))
    before = earlier_run(tmp_path / "out")
    code, lines = infer(capsys, model, tmp_path / "in", tmp_path / "out", "--warmup_count", "0")
    expect_one_line(code, lines, f"{model}: output 'y' is a scalar: no batch axis to cut into one file per sample")
    assert snapshot(tmp_path / "out") == before


def test_input_with_dynamic_sample_axes_is_refused(tmp_path, capsys):
    model = save_model(tmp_path / "dyn.onnx", [helper.make_node("Identity", ["x"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])])
    write_inputs(tmp_path / "in", 1, (3, 4, 4))
    code, lines = infer(capsys, model, tmp_path / "in", tmp_path / "out")
    expect_one_line(code, lines, f"{model}: input 'x' has dynamic axes beyond the batch (?,3,?,?): raw bins need a "
                                 "fixed sample shape")


def test_scalar_input_is_refused(tmp_path, capsys):
    model = save_model(tmp_path / "sin.onnx", [helper.make_node("Identity", ["x"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    write_inputs(tmp_path / "in", 1, ())
    code, lines = infer(capsys, model, tmp_path / "in", tmp_path / "out")
    expect_one_line(code, lines, f"{model}: input 'x' is a scalar (shape ()): the runner feeds a batch axis first")
    assert not (tmp_path / "out").exists()


class TorchLikeBackend:
    """A backend as the PyTorch reference is one (no output specs), whose module drops the batch axis."""
    name = "pytorch"

    def __init__(self, drop_batch: bool):
        from common.runtime.backend import TensorSpec
        self.drop_batch = drop_batch
        self.model_path = Path("fake.onnx")
        self.specs = [TensorSpec("x", (None, 3), np.dtype(np.float32))]

    def input_specs(self):
        return self.specs

    def output_names(self):
        return ["y"]

    def run(self, feeds):
        x = feeds["x"]
        return [x.sum(axis=0) if self.drop_batch else x * 2]


@pytest.mark.parametrize("drop_batch", [True, False])
def test_the_batch_axis_check_is_the_runners_whatever_the_backend(tmp_path, drop_batch):
    write_inputs(tmp_path / "in", 3, (3,))
    if drop_batch:
        with pytest.raises(UserError, match=r"fake.onnx: output 'y' has shape \(3,\) for a batch of 2"):
            runner.run_inference(TorchLikeBackend(True), str(tmp_path / "in"), tmp_path / "out", "r", batchsize=2,
                                 progress=False)
        assert not list((tmp_path / "out" / "r").iterdir())
    else:
        summary = runner.run_inference(TorchLikeBackend(False), str(tmp_path / "in"), tmp_path / "out", "r",
                                       batchsize=2, progress=False)
        assert summary["samples"] == 3 and len(list((tmp_path / "out" / "r").iterdir())) == 3


# ---- the runner: batch size ----------------------------------------------------------------------

def test_huge_batchsize_is_clamped_and_reads_each_file_once(tmp_path, capsys, float_model, monkeypatch):
    arrays = write_inputs(tmp_path / "in", 3)
    reads = []
    real_load = runner.load_sample
    monkeypatch.setattr(runner, "load_sample", lambda path, spec: reads.append(path) or real_load(path, spec))
    code, lines = infer(capsys, float_model, tmp_path / "in", tmp_path / "out", "--batchsize", "100000")
    assert code == 0
    assert lines == ["[WARNING] --batchsize 100000 is more than the 3 sample(s): batch 3 (a larger one would only "
                     "pad it with copies)"]
    assert len(reads) == 3
    summary = json.loads((tmp_path / "out" / "r_summary.json").read_text())
    assert summary["batchsize"] == 3 and summary["NPU_compute_time"]["count"] == 1
    for index, array in enumerate(arrays):
        assert (tmp_path / "out" / "r" / f"s{index}_0.bin").read_bytes() == array.tobytes()


def test_short_last_batch_is_padded_without_rereading(tmp_path, capsys, float_model, monkeypatch):
    write_inputs(tmp_path / "in", 5)
    reads = []
    real_load = runner.load_sample
    monkeypatch.setattr(runner, "load_sample", lambda path, spec: reads.append(path) or real_load(path, spec))
    code, lines = infer(capsys, float_model, tmp_path / "in", tmp_path / "out", "--batchsize", "2")
    assert (code, lines) == (0, [])
    assert len(reads) == 5 and len(list((tmp_path / "out" / "r").iterdir())) == 5


def test_static_batch_beyond_the_memory_limit_is_refused_before_reading(tmp_path, capsys):
    side = 1024  # 4 MiB per sample; a static batch of 1100 would be 4.3 GiB
    model = save_model(tmp_path / "big.onnx", [helper.make_node("Identity", ["x"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1100, side, side])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1100, side, side])])
    (tmp_path / "in").mkdir()
    with open(tmp_path / "in" / "s0.bin", "wb") as handle:
        handle.truncate(side * side * 4)
    before = earlier_run(tmp_path / "out")
    code, lines = infer(capsys, model, tmp_path / "in", tmp_path / "out")
    expect_one_line(code, lines, f"{model}: its static batch of 1100: a batch of inputs would take 4.3 GiB "
                                 "(1100 x 4194304 bytes), more than the runner's limit of 4 GiB")
    assert snapshot(tmp_path / "out") == before


def test_dynamic_batch_beyond_the_memory_limit_is_refused(tmp_path, capsys, float_model, monkeypatch):
    monkeypatch.setattr(runner, "MAX_BATCH_BYTES", 1000)
    write_inputs(tmp_path / "in", 6)
    code, lines = infer(capsys, float_model, tmp_path / "in", tmp_path / "out", "--batchsize", "5")
    expect_one_line(code, lines, "--batchsize 5: a batch of inputs would take 0.0 GiB (5 x 240 bytes)")
    code, lines = infer(capsys, float_model, tmp_path / "in", tmp_path / "out", "--batchsize", "4")
    assert code == 0, lines  # 960 bytes: within the limit


# ---- the runner: --resume --------------------------------------------------------------------------

@pytest.mark.parametrize("outfmt", ["BIN", "NPY"])
def test_resume_redoes_outputs_of_another_size_and_says_how_many(tmp_path, capsys, float_model, outfmt):
    write_inputs(tmp_path / "in", 3)
    ext = outfmt.lower()
    assert infer(capsys, float_model, tmp_path / "in", tmp_path / "full", "--outfmt", outfmt)[0] == 0
    other = identity_model(tmp_path / "other.onnx", TensorProto.FLOAT, (2, 2))
    write_inputs(tmp_path / "in_other", 3, (2, 2))
    assert infer(capsys, other, tmp_path / "in_other", tmp_path / "part", "--outfmt", outfmt)[0] == 0
    kept = tmp_path / "part" / "r" / f"s1_0.{ext}"
    shutil.copy(tmp_path / "full" / "r" / f"s1_0.{ext}", kept)  # one finished output of the right size
    os.utime(kept, ns=(1, 1))
    code, lines = infer(capsys, float_model, tmp_path / "in", tmp_path / "part", "--outfmt", outfmt, "--resume")
    assert code == 0
    what = "16 bytes, expected 240" if outfmt == "BIN" else "float32 (2, 2), expected float32 (3, 4, 5)"
    assert lines == [f"[WARNING] --resume: 2 existing output file(s) were not of the size the model produces and "
                     f"were redone (first: s0_0.{ext}: {what})"]
    assert kept.stat().st_mtime_ns == 1
    summary = json.loads((tmp_path / "part" / "r_summary.json").read_text())
    assert summary["samples_skipped_by_resume"] == 1 and summary["outputs_redone_by_resume"] == 2
    assert snapshot(tmp_path / "part" / "r") == snapshot(tmp_path / "full" / "r")


def test_resume_keeps_every_output_of_the_right_size(tmp_path, capsys, float_model):
    write_inputs(tmp_path / "in", 3)
    assert infer(capsys, float_model, tmp_path / "in", tmp_path / "out")[0] == 0
    before = snapshot(tmp_path / "out" / "r")
    code, lines = infer(capsys, float_model, tmp_path / "in", tmp_path / "out", "--resume")
    assert (code, lines) == (0, [])
    assert snapshot(tmp_path / "out" / "r") == before
    assert json.loads((tmp_path / "out" / "r_summary.json").read_text())["outputs_redone_by_resume"] == 0


# ---- the runner: .npy inputs ------------------------------------------------------------------------

def _npy(folder: Path, name: str, array) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / name, array)
    return folder / name


@pytest.mark.parametrize("shape, fragment", [
    ((4, 5, 3), "array of shape (4, 5, 3), input 'x' of m.onnx takes (3, 4, 5) (or (1, 3, 4, 5)): the same number "
                "of values in another layout (HWC for CHW?)"),
    ((3, 4, 6), "array of shape (3, 4, 6), input 'x' of m.onnx takes (3, 4, 5) (or (1, 3, 4, 5))"),
    ((2, 3, 4, 5), "array of shape (2, 3, 4, 5), input 'x' of m.onnx takes (3, 4, 5)"),
    ((60,), "array of shape (60,), input 'x' of m.onnx takes (3, 4, 5)"),
])
def test_npy_of_another_shape_is_named(tmp_path, capsys, float_model, shape, fragment):
    path = _npy(tmp_path / "in", "a.npy", np.zeros(shape, np.float32))
    before = earlier_run(tmp_path / "out")
    code, lines = infer(capsys, float_model, tmp_path / "in", tmp_path / "out")
    expect_one_line(code, lines, f"{path}: {fragment}")
    assert snapshot(tmp_path / "out") == before


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.complex64])
def test_npy_whose_conversion_loses_values_is_named(tmp_path, capsys, float_model, dtype):
    path = _npy(tmp_path / "in", "a.npy", np.zeros((3, 4, 5), dtype))
    code, lines = infer(capsys, float_model, tmp_path / "in", tmp_path / "out")
    expect_one_line(code, lines, f"{path}: array of {np.dtype(dtype).name}, input 'x' of m.onnx takes float32: "
                                 "the conversion would lose values")


def test_npy_of_a_safe_dtype_and_with_a_batch_axis_of_one_is_used_and_said(tmp_path, capsys, float_model):
    values = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    _npy(tmp_path / "in", "a.npy", values)
    _npy(tmp_path / "in", "b.npy", values[None].astype(np.float32) + 1)
    code, lines = infer(capsys, float_model, tmp_path / "in", tmp_path / "out")
    assert code == 0
    assert lines == [f"[WARNING] 1 .npy input(s) hold uint8, converted without loss to float32 for input 'x' "
                     f"(first: {tmp_path}/in/a.npy)"]
    got_a = np.fromfile(tmp_path / "out" / "r" / "a_0.bin", np.float32).reshape(3, 4, 5)
    got_b = np.fromfile(tmp_path / "out" / "r" / "b_0.bin", np.float32).reshape(3, 4, 5)
    np.testing.assert_array_equal(got_a, values.astype(np.float32))
    np.testing.assert_array_equal(got_b, values.astype(np.float32) + 1)


@pytest.mark.parametrize("content, fragment", [
    (b"", "not a readable .npy file"),
    (b"\x93NUMPY\x01\x00", "not a readable .npy file"),
    (b"not numpy at all", "not a readable .npy file"),
    ("pickle", "not a readable .npy file (an array of Python objects, not numbers)"),
    ("cut", "not a readable .npy file"),
])
def test_damaged_npy_is_named(tmp_path, capsys, float_model, content, fragment):
    path = tmp_path / "in" / "a.npy"
    path.parent.mkdir()
    if content == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif content == "cut":
        np.save(path, np.zeros((3, 4, 5), np.float32))
        path.write_bytes(path.read_bytes()[:-7])
    else:
        path.write_bytes(content)
    code, lines = infer(capsys, float_model, tmp_path / "in", tmp_path / "out")
    expect_one_line(code, lines, f"{path}: {fragment}")


# ---- the runner: files that are not files ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["dangling symlink", "folder", "fifo"])
def test_a_non_file_among_the_inputs_is_named_not_skipped(tmp_path, capsys, float_model, kind):
    write_inputs(tmp_path / "in", 2)
    odd = tmp_path / "in" / "s9.bin"
    if kind == "dangling symlink":
        odd.symlink_to(tmp_path / "gone.bin")
        fragment = f"{odd}: dangling symlink (its target {tmp_path}/gone.bin does not exist)"
    elif kind == "folder":
        odd.mkdir()
        fragment = f"{odd}: a folder with a bin name, not a file"
    else:
        os.mkfifo(odd)
        fragment = f"{odd}: not a regular file (a device, pipe or socket), cannot be read as a bin"
    before = earlier_run(tmp_path / "out")
    code, lines = infer(capsys, float_model, tmp_path / "in", tmp_path / "out")
    expect_one_line(code, lines, fragment)
    assert snapshot(tmp_path / "out") == before


def test_a_dangling_symlink_given_as_an_input_file_is_named(tmp_path, capsys, float_model):
    write_inputs(tmp_path / "in", 1)
    (tmp_path / "link.bin").symlink_to(tmp_path / "gone.bin")
    code, lines = infer(capsys, float_model, f"{tmp_path}/in/s0.bin,{tmp_path}/link.bin", tmp_path / "out")
    expect_one_line(code, lines, f"{tmp_path}/link.bin: dangling symlink (its target {tmp_path}/gone.bin does not exist)")


@needs_unshare
def test_an_unreadable_input_is_named(tmp_path):
    """As a user without the permission (a user namespace: the tests run as root, who reads anything)."""
    shared = Path(tempfile.mkdtemp(prefix="segzoo-perm-"))
    try:
        os.chmod(shared, 0o755)
        model = identity_model(shared / "m.onnx")
        write_inputs(shared / "in", 2)
        os.chmod(shared / "in" / "s1.bin", 0o000)
        (shared / "out").mkdir()
        os.chmod(shared / "out", 0o777)
        result = subprocess.run(["unshare", "--user", PY, "-m", "common.infer", "--model", str(model), "--input",
                                 str(shared / "in"), "--output", str(shared / "out"), "--output_dirname", "r"],
                                cwd=REPO_ROOT, capture_output=True, text=True, env=_env())
        expect_one_line(result.returncode, error_lines(result), f"{shared}/in/s1.bin: cannot read (Permission denied)")
        assert not (shared / "out" / "r").exists()  # checked before the first inference
    finally:
        shutil.rmtree(shared)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


# ---- writes: atomic_path ---------------------------------------------------------------------------

@pytest.fixture
def full_disk_for(monkeypatch):
    """Make the temporary files of the given final names sit on /dev/full: every write to them
    fails in the kernel with ENOSPC, whatever library writes."""
    targets: set[str] = set()
    real_mkstemp = tempfile.mkstemp

    def mkstemp_on_full_disk(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        if any(Path(name).name.startswith(f".{target}.") for target in targets):
            os.close(fd)
            os.unlink(name)
            os.symlink("/dev/full", name)
            fd = os.open(name, os.O_WRONLY)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_on_full_disk)
    monkeypatch.setattr(atomic, "_UMASK", 0)  # chmod follows the symlink: keep /dev/full's own 0666
    return targets


@pytest.mark.parametrize("writer", ["bin", "json", "text", "npy", "png", "onnx"])
def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_stays(tmp_path, full_disk_for, writer):
    target = tmp_path / f"result.{writer}"
    target.write_bytes(b"the old file")
    full_disk_for.add(target.name)
    with pytest.raises(UserError) as raised:
        if writer == "bin":
            write_bin(target, np.zeros(100_000, np.float32))
        elif writer == "json":
            write_json_atomic(target, {"a": list(range(5000))})
        elif writer == "text":
            atomic.write_text_atomic(target, "x" * 100_000)
        elif writer == "npy":
            runner.write_output(target, np.zeros((300, 300), np.float32), "NPY")
        elif writer == "png":
            from common.viz.draw import save_png
            save_png(target, np.full((200, 200), 3, np.uint8))
        else:
            from common.runtime.graph import save_onnx
            save_onnx(onnx.load(str(identity_model(tmp_path / "m.onnx"))), target)
    assert str(raised.value) == f"{target}: cannot write (No space left on device)"
    assert target.read_bytes() == b"the old file"
    assert hidden_files(tmp_path) == []


def test_cv2_images_on_a_full_disk_are_named(tmp_path, full_disk_for):
    """cv2.imwrite reports success on a full disk: images are encoded by cv2, written by Python."""
    from common.viz.draw import save_encoded
    target = tmp_path / "pred.png"
    full_disk_for.add(target.name)
    with pytest.raises(UserError, match=rf"^{target}: cannot write \(No space left on device\)$"):
        save_encoded(target, np.full((300, 300), 7, np.uint8))
    assert not target.exists() and hidden_files(tmp_path) == []
    full_disk_for.clear()
    save_encoded(target, np.full((30, 30), 7, np.uint8))
    import cv2
    assert (cv2.imread(str(target), cv2.IMREAD_UNCHANGED) == 7).all()


def test_a_failed_rename_is_named_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old")
    real_replace = os.replace

    def refuse(source, destination):
        if Path(destination) == target:
            raise PermissionError(errno.EACCES, "Permission denied", str(source), None, str(destination))
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(UserError, match=rf"^{target}: cannot rename the finished file into place \(Permission denied\)$"):
        write_json_atomic(target, {"new": 1})
    assert target.read_text() == "old" and hidden_files(tmp_path) == []


@settings(max_examples=60, deadline=None)
@given(code=st.sampled_from(sorted(errno.errorcode)), named=st.sampled_from(["none", "temp", "other"]))
def test_only_errors_of_writing_become_one_line(code, named):
    """An OSError inside the block is the write's when it names the temporary file, or names no
    file and is one only a write can raise (ENOSPC, EDQUOT, EFBIG, EROFS); any other passes on
    unchanged with its traceback (reading another file, a bug)."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "x.bin"
        write_only = code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
        try:
            with atomic_path(target) as tmp:
                filename = {"none": None, "temp": str(tmp), "other": f"{folder}/input.bin"}[named]
                raise OSError(code, os.strerror(code), filename)
        except UserError as err:
            assert named == "temp" or (named == "none" and write_only)
            assert str(err) == f"{target}: cannot write ({os.strerror(code)})"
        except OSError as err:
            assert not (named == "temp" or (named == "none" and write_only))
            assert err.errno == code
        assert sorted(os.listdir(folder)) == []


def test_other_exceptions_and_ctrl_c_pass_through_and_remove_the_temporary(tmp_path):
    for error in (RuntimeError("a bug"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with atomic_path(tmp_path / "x.bin") as tmp:
                tmp.write_bytes(b"half")
                raise error
    assert sorted(os.listdir(tmp_path)) == []


# ---- writes: real read-only folders and full disks (user namespace) --------------------------------

def _in_namespace(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=_env())


@needs_unshare
def test_inference_into_a_read_only_folder(tmp_path, float_model):
    write_inputs(tmp_path / "in", 2)
    before = earlier_run(tmp_path / "out")
    out = tmp_path / "out"
    result = _in_namespace(f"mount --bind {out} {out} && mount -o remount,bind,ro {out} && "
                           f"{PY} -m common.infer --model {float_model} --input {tmp_path}/in --output {out} "
                           "--output_dirname r")
    expect_one_line(result.returncode, error_lines(result), f"{out}/r/s0_0.bin: cannot write (Read-only file system)")
    assert snapshot(out) == before


@needs_unshare
def test_inference_onto_a_full_disk(tmp_path, float_model):
    write_inputs(tmp_path / "in", 300)  # 300 x 240 bytes of outputs on a 16 KiB file system
    disk, report = tmp_path / "disk", tmp_path / "report.json"
    disk.mkdir()
    listing = ("import hashlib, json, pathlib, sys; d = pathlib.Path(sys.argv[1]); "
               "json.dump({str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() "
               "for p in sorted(d.rglob('*')) if p.is_file()}, open(sys.argv[2], 'w'))")
    result = _in_namespace(
        f"mount -t tmpfs -o size=16k tmpfs {disk} && mkdir {disk}/r && printf old > {disk}/r/earlier_0.bin && "
        f"{PY} -c \"{listing}\" {disk} {report}.before && "
        f"{PY} -m common.infer --model {float_model} --input {tmp_path}/in --output {disk} --output_dirname r; "
        f"code=$?; {PY} -c \"{listing}\" {disk} {report}; exit $code")
    line = expect_one_line(result.returncode, error_lines(result), "cannot write (No space left on device)")
    assert line.startswith(f"error: {disk}/r/s") and line.split(":")[1].endswith("_0.bin")
    after, before = json.loads(report.read_text()), json.loads(Path(f"{report}.before").read_text())
    assert not [name for name in after if Path(name).name.startswith(".")]
    assert all(after[name] == digest for name, digest in before.items())


@needs_unshare
def test_export_into_a_read_only_folder_fails_before_loading(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "x.onnx").write_bytes(b"old model")
    before = snapshot(folder)
    result = _in_namespace(f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && cd RefineNet && "
                           f"{PY} RefineNet_pth2onnx.py --input-file {tmp_path}/absent.pth.tar --output-file {folder}/x.onnx")
    expect_one_line(result.returncode, error_lines(result), f"{folder}: folder is not writable (read-only file system)")
    assert snapshot(folder) == before


# ---- writes: export, graph fixes, postprocess in-process --------------------------------------------

def test_export_on_a_full_disk_keeps_the_old_model(tmp_path, full_disk_for):
    import torch
    from common.runtime.export import export_onnx
    target = tmp_path / "x.onnx"
    target.write_bytes(b"old model")
    full_disk_for.add(target.name)
    with pytest.raises(UserError, match=rf"^{target}: cannot write \(No space left on device\)$"):
        export_onnx(torch.nn.Conv2d(3, 4, 3), [torch.zeros(1, 3, 8, 8)], target, input_names=["x"],
                    output_names=["y"], pack="RefineNet")
    assert target.read_bytes() == b"old model" and hidden_files(tmp_path) == []


def _int64_output_model(path: Path) -> Path:
    return save_model(path, [helper.make_node("Cast", ["x"], ["labels"], to=TensorProto.INT64)],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                      [helper.make_tensor_value_info("labels", TensorProto.INT64, ["N", 4])], opset=11)


def _transposed_softmax_model(path: Path) -> Path:
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Softmax", ["t"], ["s"], axis=3),
             helper.make_node("Transpose", ["s"], ["y"], perm=[0, 3, 1, 2])]
    return save_model(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4, 4])], opset=11)


@pytest.mark.parametrize("script", ["label_to_int32", "fix_softmax_transpose"])
def test_graph_fix_on_a_full_disk_keeps_the_old_file(tmp_path, capsys, full_disk_for, script):
    module, make = ((label_to_int32_py, _int64_output_model) if script == "label_to_int32"
                    else (fix_softmax_py, _transposed_softmax_model))
    source = make(tmp_path / "in.onnx")
    target = tmp_path / "fixed.onnx"
    target.write_bytes(b"an earlier fix")
    before = snapshot(tmp_path)
    full_disk_for.add(target.name)
    code, lines = run_cli(module, source, target, capsys=capsys)
    expect_one_line(code, lines, f"{target}: cannot write (No space left on device)")
    assert snapshot(tmp_path) == before
    full_disk_for.clear()
    code, lines = run_cli(module, source, target, capsys=capsys)
    assert code == 0 and onnx.load(str(target)).graph.node


def _refinenet_results(folder: Path, ids) -> Path:
    rng = np.random.default_rng(0)
    for image_id in ids:
        write_bin(folder / f"{image_id}_0.bin", rng.standard_normal((21, 16, 16)).astype(np.float32))
    return folder


@pytest.mark.parametrize("which", ["metric JSON", "show picture"])
def test_postprocess_on_a_full_disk_names_the_file(tmp_path, capsys, synthetic_voc, full_disk_for, which):
    from common.data.voc import VOCSegmentation
    ids = VOCSegmentation.from_parent(synthetic_voc).ids
    results = _refinenet_results(tmp_path / "res", ids)
    show = tmp_path / "show"
    metric = tmp_path / "m.json"
    args = ("--val-dir", synthetic_voc, "--result-dir", results, "--size", 64, "--save_path", metric, "--show-dir", show)
    assert run_cli(refinenet_post_py, *args, capsys=capsys)[0] == 0
    before = snapshot(tmp_path)
    target = metric if which == "metric JSON" else show / f"{ids[0]}_classes.png"
    full_disk_for.add(target.name)
    code, lines = run_cli(refinenet_post_py, *args, capsys=capsys)
    line = next((l for l in lines if l.startswith("error:")), lines)
    assert code == 2 and line == f"error: {target}: cannot write (No space left on device)", lines
    assert snapshot(tmp_path) == before


# ---- stale temporary files of killed runs ----------------------------------------------------------

@pytest.fixture(scope="module")
def dead_pid() -> int:
    process = subprocess.Popen([PY, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_file_output_removes_only_its_own_dead_temporaries(tmp_path, dead_pid):
    mine_dead = tmp_path / f".x.onnx.{dead_pid}-abc123.tmp.onnx"
    mine_legacy = tmp_path / ".x.onnx.k3j2_x.tmp.onnx"
    mine_live = tmp_path / f".x.onnx.{os.getpid()}-abc123.tmp.onnx"
    other = tmp_path / f".y.onnx.{dead_pid}-abc123.tmp.onnx"
    for path in (mine_dead, mine_legacy, mine_live, other):
        path.write_bytes(b"half")
    output_file_parent(tmp_path / "x.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine_live.name, other.name])


def test_an_owned_folder_loses_every_dead_temporary(tmp_path, dead_pid):
    for name in (f".a_0.bin.{dead_pid}-q1.tmp.bin", ".b_0.png.zz.tmp.png", f".c.json.{os.getpid()}-q1.tmp.json",
                 "d_0.bin", ".hidden_but_not_ours"):
        (tmp_path / name).write_bytes(b"x")
    output_folder(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".c.json.{os.getpid()}-q1.tmp.json",
                                                          ".hidden_but_not_ours", "d_0.bin"]


def test_inference_removes_what_a_killed_run_left_without_resume(tmp_path, capsys, float_model, dead_pid):
    write_inputs(tmp_path / "in", 2)
    (tmp_path / "out" / "r").mkdir(parents=True)
    (tmp_path / "out" / "r" / f".s0_0.bin.{dead_pid}-aa.tmp.bin").write_bytes(b"half")
    (tmp_path / "out" / f".r_summary.json.{dead_pid}-bb.tmp.json").write_bytes(b"{")
    (tmp_path / "out" / f".other_summary.json.{dead_pid}-bb.tmp.json").write_bytes(b"{")  # another run's
    assert infer(capsys, float_model, tmp_path / "in", tmp_path / "out") == (0, [])
    assert hidden_files(tmp_path / "out") == [f".other_summary.json.{dead_pid}-bb.tmp.json"]


@pytest.mark.parametrize("command", ["export", "label_to_int32", "fix_softmax_transpose", "postprocess"])
def test_a_rerun_removes_what_a_killed_run_left(tmp_path, capsys, dead_pid, synthetic_voc, command):
    """What SIGKILL leaves (a hidden temporary of a dead writer) is gone after the next run of
    the same command, without --resume; another file's temporaries stay."""
    if command == "postprocess":
        from common.data.voc import VOCSegmentation
        results = _refinenet_results(tmp_path / "res", VOCSegmentation.from_parent(synthetic_voc).ids)
        target, show = tmp_path / "m.json", tmp_path / "show"
        show.mkdir()
        left = [tmp_path / f".m.json.{dead_pid}-x1.tmp.json", show / f".a_colour.png.{dead_pid}-x2.tmp.png"]
    else:
        target = tmp_path / "out.onnx"
        left = [tmp_path / f".out.onnx.{dead_pid}-x1.tmp.onnx"]
    unrelated = tmp_path / f".notes.txt.{dead_pid}-x3.tmp.txt"
    for path in (*left, unrelated):
        path.write_bytes(b"half")
    if command == "export":
        import torch
        from common.runtime.export import export_onnx
        export_onnx(torch.nn.Conv2d(3, 4, 3), [torch.zeros(1, 3, 8, 8)], target, input_names=["x"],
                    output_names=["y"], pack="RefineNet")
    elif command == "postprocess":
        assert run_cli(refinenet_post_py, "--val-dir", synthetic_voc, "--result-dir", results, "--size", 64,
                       "--save_path", target, "--show-dir", show, capsys=capsys)[0] == 0
    else:
        module, make = ((label_to_int32_py, _int64_output_model) if command == "label_to_int32"
                        else (fix_softmax_py, _transposed_softmax_model))
        assert run_cli(module, make(tmp_path / "in.onnx"), target, capsys=capsys)[0] == 0
    assert target.is_file() and not any(path.exists() for path in left) and unrelated.exists()
    assert hidden_files(tmp_path) == [unrelated.name]


def test_temporary_names_carry_the_writer_and_are_recognised(tmp_path):
    with atomic_path(tmp_path / "a_0.bin") as tmp:
        assert tmp.name.startswith(f".a_0.bin.{os.getpid()}-") and is_temp_name(tmp.name)
        assert remove_stale_temps(tmp_path) == 0  # its writer (this process) is alive
        tmp.write_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["a_0.bin"]


# ---- Ctrl-C ------------------------------------------------------------------------------------------

def _wait_for(condition, process, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None and not condition():
        time.sleep(0.002)
    assert process.poll() is None, "the command ended before it could be interrupted"


def _maps_hold(process, library: str):
    def check() -> bool:
        try:
            return library in Path(f"/proc/{process.pid}/maps").read_text()
        except OSError:
            return False
    return check


def _interrupted(process, group: bool = False, times: int = 1) -> tuple[int, list[str]]:
    for _ in range(times):
        if group:
            os.killpg(process.pid, signal.SIGINT)  # as a terminal does: every process of the job
        else:
            process.send_signal(signal.SIGINT)
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, [line for line in stderr.splitlines() if line.strip() and "%|" not in line]


def _popen(command, cwd=REPO_ROOT) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=_env())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the import under way")
@pytest.mark.parametrize("command, library", [
    ((PY, "RefineNet_pth2onnx.py", "--input-file", "absent", "--output-file", "x.onnx"), "libtorch_cpu"),
    ((PY, "-m", "common.torch_infer", "--model", "m", "--checkpoint", "c", "--input", "i", "--output", "o"),
     "libtorch_cpu"),
    ((PY, "wseg_postprocess.py", "voc", "list.txt", "result", "masks"), "libtorch_cpu"),
], ids=["pack script", "python -m", "postprocess"])
def test_ctrl_c_during_the_imports_is_one_line(command, library):
    cwd = REPO_ROOT / ("RefineNet" if command[1].startswith("RefineNet") else
                       "Wseg" if command[1].startswith("wseg") else "")
    process = _popen(command, cwd)
    _wait_for(_maps_hold(process, library), process)
    code, lines = _interrupted(process)
    assert (code, lines) == (130, [cli.INTERRUPTED_LINE])


@pytest.mark.parametrize("times", [1, 3], ids=["once", "three times"])
def test_ctrl_c_during_inference_is_one_line_and_leaves_no_temporary(tmp_path, times):
    model = slow_model(tmp_path / "slow.onnx")
    write_inputs(tmp_path / "in", 400, (3, 48, 48))
    out = tmp_path / "out"
    before = earlier_run(out)
    process = _popen([PY, "-m", "common.infer", "--model", str(model), "--input", str(tmp_path / "in"),
                      "--output", str(out), "--output_dirname", "r", "--threads", "1", "--loop", "3"])
    _wait_for(lambda: len(list((out / "r").glob("s*_0.bin"))) >= 3, process)
    code, lines = _interrupted(process, group=True, times=times)
    assert (code, lines) == (130, [cli.INTERRUPTED_LINE])
    assert hidden_files(out) == []
    after = snapshot(out)
    assert all(after[name] == digest for name, digest in before.items())  # the summary was not rewritten
    finished = [name for name in after if name.startswith("r/s")]
    assert 3 <= len(finished) < 400
    assert all((out / name).stat().st_size == 32 * 48 * 48 * 4 for name in finished)


def test_ctrl_c_with_pool_workers_is_one_line_and_stops_them(tmp_path):
    from common.data.synth.voc import write_synthetic_voc
    voc = write_synthetic_voc(tmp_path / "data", count=24, seed=4)
    bins = tmp_path / "bins"
    process = _popen([PY, "RefineNet_preprocess.py", "--root-dir", str(voc), "--size", "400", "--bin-dir", str(bins),
                      "--workers", "2"], REPO_ROOT / "RefineNet")
    _wait_for(lambda: bins.is_dir() and len([p for p in bins.iterdir() if not p.name.startswith(".")]) >= 2, process)
    code, lines = _interrupted(process, group=True)
    assert (code, lines) == (130, [cli.INTERRUPTED_LINE])
    assert hidden_files(bins) == [] and not (bins / "preprocess_meta.json").exists()
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], "worker processes outlived the interrupted run"


STEP_THAT_SLEEPS = ("import sys, time; from common.cli import run_script; "
                    "sys.exit(run_script(lambda args: time.sleep(60), lambda argv: None))")
# A parent as run_pack is one (its run_step), or as run_all is one (its run_logged, output piped).
RUN_PACK_PARENT = ("import sys; from common import run_pack; from common.cli import run_script; "
                   "from common.pipeline.pack_config import Step; from common.pipeline.packs import pack_config; "
                   "step = Step('a step', ('-c', sys.argv[1]), 'compare'); print('started', flush=True); "
                   "sys.exit(run_script(lambda args: run_pack.run_step(pack_config('RefineNet'), step, "
                   "dict(py=sys.executable)), lambda argv: None))")
RUN_ALL_PARENT = ("import sys; from pathlib import Path; from common import run_all; from common.cli import run_script; "
                  "print('started', flush=True); sys.exit(run_script(lambda args: run_all.run_logged("
                  "[sys.executable, '-c', sys.argv[1]], Path(sys.argv[2])), lambda argv: None))")


@pytest.mark.parametrize("parent", ["run_pack", "run_all"])
@pytest.mark.parametrize("group", [True, False], ids=["terminal Ctrl-C", "kill -INT of the parent"])
def test_a_step_interrupted_with_its_parent_reports_once(tmp_path, parent, group):
    """run_pack and run_all wait for the step they run (a terminal's Ctrl-C reached it too, or
    they forward it) and stay silent when it reported the interrupt itself: one line, 130."""
    code = RUN_PACK_PARENT if parent == "run_pack" else RUN_ALL_PARENT
    process = subprocess.Popen([PY, "-c", code, STEP_THAT_SLEEPS, str(tmp_path / "pack.log")], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env=_env())
    assert process.stdout.readline().strip().endswith("started")
    time.sleep(1.5)  # the step is in its main by now
    if group:
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    # run_all copies the step's output (stderr too) to its stdout and the log; run_pack leaves it on stderr
    shown = (stderr if parent == "run_pack" else stdout).splitlines()[-1:]
    assert (process.returncode, shown) == (130, [cli.INTERRUPTED_LINE]), (stdout, stderr)
    assert (stdout + stderr).count(cli.INTERRUPTED_LINE) == 1  # said once, by the step
    assert hidden_files(tmp_path) == []


# ---- scripts import common first ---------------------------------------------------------------------

SCRIPT_FOLDERS = ("common", "RefineNet", "3D_HRNet", "PointRend", "Wseg", "MaskRCNN_mmdet")


def first_third_party_import(source: str) -> str | None:
    """The module of a script's first import outside the standard library, or None."""
    import ast
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if name and name.split(".")[0] not in sys.stdlib_module_names:
                return name
    return None


def test_every_script_imports_common_before_its_slow_imports():
    """A Ctrl-C during `import torch` is one line only once common.cli has set its hook."""
    scripts = [p for folder in SCRIPT_FOLDERS for p in sorted((REPO_ROOT / folder).glob("*.py"))
               if "script_entry(main" in p.read_text()]
    offenders = [f"{p.relative_to(REPO_ROOT)}: {first_third_party_import(p.read_text())}" for p in scripts
                 if not (first_third_party_import(p.read_text()) or "common").startswith("common")]
    assert len(scripts) > 25 and offenders == []


def test_the_import_order_check_finds_a_slow_import_first():
    assert first_third_party_import("import os\nimport torch\nfrom common.cli import x\n") == "torch"
    assert first_third_party_import("from __future__ import annotations\nimport sys\nfrom common.cli import x\n"
                                    "import torch\n") == "common.cli"
