"""Issue 14, checkpoint contents: a hostile or broken checkpoint ends in one line naming the file
(and the tensor) and what is wrong, exit code 2, and nothing in the output folder changes; a
valid but odd one (half precision, optimizer state) loads and says so. Bombs (files declaring
far more data than they hold) are refused before the declared size is allocated: the peak
memory of a subprocess reading each one is measured.

Export scripts run in-process through common.cli.run_script (the command line's path minus
sys.exit); the memory cases and one smoke case run as real subprocesses. Every file is built
here, small: bombs declare gigabytes in a few bytes (or a sparse file), and "complete"
checkpoints for the value checks are stride-0 views of one stored value per tensor, which the
reader accepts only where the manifest gives the tensor exactly that shape.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_checkpoint_files as hf
from common import cli
from common.weights.checkpoint import WeightsLayout, load_checkpoint_into
from common.weights.demo import manifest_shapes
from common.pipeline.packs import pack_module
from helpers import snapshot, REPO_ROOT, error_lines, expect_one_line, run_cli

EXPORTS = {  # pack -> (script, (checkpoint, onnx) -> arguments at a small size)
    "RefineNet": ("RefineNet_pth2onnx", lambda ckpt, out: ["--input-file", ckpt, "--output-file", out,
                                                           "--size", 64]),
    "PointRend": ("PointRend_pkl2onnx", lambda ckpt, out: [ckpt, out, "--input-size", 64, 128]),
    "3D_HRNet": ("HRNet_pth2onnx", lambda ckpt, out: ["--pth", ckpt, "--save_path", out, "--input-hw", 64, 128]),
    "Wseg": ("wseg_pth2onnx", lambda ckpt, out: [ckpt, out, "--input-size", 64]),
    "MaskRCNN_mmdet": ("mmdet_pth2onnx", lambda ckpt, out: [ckpt, "--output-file", out, "--shape", 64, 64]),
}
PEAK_GROWTH_LIMIT_MB = 50


# ---- harness ----------------------------------------------------------------------------------

def export(pack: str, checkpoint: Path, out_dir: Path, capsys) -> tuple[int, list[str]]:
    script, argv = EXPORTS[pack]
    return run_cli(pack_module(pack, script), *argv(checkpoint, out_dir / "model.onnx"), capsys=capsys)


def expect_refused(pack: str, checkpoint: Path, out_dir: Path, capsys, *fragments: str) -> str:
    before = snapshot(out_dir)
    code, lines = export(pack, checkpoint, out_dir, capsys)
    line = expect_one_line(code, lines, f"error: {checkpoint}: ", *fragments)
    assert snapshot(out_dir) == before  # the ONNX did not appear, nothing else changed
    return line


# ---- builders -----------------------------------------------------------------------------------

def tensor_tree(**tensors) -> dict:
    return {"model": OrderedDict(tensors), "epoch": 0}


def one_float(key: str = "0", value: float = 0.5, storage_class=torch.FloatStorage):
    return hf.FakeStorage(key, storage_class, 1), {key: np.asarray([value], _numpy_of(storage_class)).tobytes()}


def _numpy_of(storage_class) -> str:
    return {torch.FloatStorage: "<f4", torch.HalfStorage: "<f2", torch.LongStorage: "<i8",
            torch.DoubleStorage: "<f8", torch.BoolStorage: "?", torch.ComplexFloatStorage: "<c8"}[storage_class]


def saved(path: Path, tree, legacy: bool = False) -> Path:
    torch.save(tree, path, _use_new_zipfile_serialization=not legacy)
    return path


def build_garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    return path


def build_cut_zip(path):
    saved(path, tensor_tree(**{"conv1.weight": torch.zeros(64, 3, 7, 7)}))
    path.write_bytes(path.read_bytes()[:5000])
    return path


def build_zip_without_pickle(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/version", "3\n")
    return path


def build_missing_record(path):
    storage = hf.FakeStorage("0", numel=4)
    return hf.write_torch_zip(path, tensor_tree(w=hf.FakeTensor(storage, (4,))), {})


def build_short_record(path):
    storage = hf.FakeStorage("0", numel=100_000_000)
    return hf.write_torch_zip(path, tensor_tree(w=hf.FakeTensor(storage, (2,))), {"0": bytes(8)})


def build_deflated_bomb(path):
    storage = hf.FakeStorage("0", numel=(1 << 30) // 4)
    return hf.write_torch_zip(path, tensor_tree(w=hf.FakeTensor(storage, (4,))), {"0": hf.Deflated(1 << 30)})


def build_stride0_fp16(path):
    storage, records = one_float(storage_class=torch.HalfStorage)
    view = hf.FakeTensor(storage, (500_000_000,), stride=(0,))
    return hf.write_torch_zip(path, tensor_tree(**{"conv1.weight": view}), records)


def build_past_storage(path):
    storage = hf.FakeStorage("0", numel=4)
    view = hf.FakeTensor(storage, (4,), offset=2)
    return hf.write_torch_zip(path, tensor_tree(w=view), {"0": bytes(16)})


def build_oversized_storage(path):
    """A real 64x3x7x7 weight viewing a 1 GiB storage (a hole in a sparse file)."""
    storage = hf.FakeStorage("0", numel=(1 << 30) // 4)
    view = hf.FakeTensor(storage, (64, 3, 7, 7))
    return hf.write_torch_zip(path, tensor_tree(**{"conv1.weight": view}), {"0": hf.Hole(1 << 30)})


def build_sparse(path):
    return saved(path, tensor_tree(w=torch.zeros(3).to_sparse()))


def build_quantized(path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_per_tensor is deprecated, still writable
        quantized = torch.quantize_per_tensor(torch.zeros(3), 0.1, 0, torch.qint8)
    return saved(path, tensor_tree(w=quantized))


def build_meta(path):
    return saved(path, tensor_tree(w=torch.empty(3, device="meta")))


def build_nested(path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nested tensors are a prototype API
        nested = torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])
    return saved(path, tensor_tree(w=nested))


def build_subclass(path):
    wrapper = hf.Reduce(torch._utils._rebuild_wrapper_subclass,
                        (torch.Tensor, torch.float32, (3,), (1,), 0, torch.strided, torch.device("cpu"), False))
    return hf.write_torch_zip(path, tensor_tree(w=wrapper), {})


def build_bytearray_bomb(path):
    return hf.write_torch_zip(path, {"model": {}, "blob": hf.Reduce(bytearray, (10 ** 9,))}, {})


def build_duplicate_record(path):
    storage, records = one_float()
    return hf.write_torch_zip(path, tensor_tree(w=hf.FakeTensor(storage, (1,))), records,
                              extra_entries=[("archive/data/0", bytes(4))])


def build_bad_byteorder(path):
    storage, records = one_float()
    return hf.write_torch_zip(path, tensor_tree(w=hf.FakeTensor(storage, (1,))), records, byteorder=b"middle")


def build_deep_nesting(path):
    tree: object = [0]
    for _ in range(200):
        tree = [tree]
    return saved(path, {"model": {}, "history": tree})


def build_list_container(path):
    return saved(path, [torch.zeros(2)])


def build_dict_where_tensor(path):
    return saved(path, tensor_tree(**{"conv1.weight": {"data": torch.zeros(2)}}))


def build_non_string_key(path):
    return saved(path, {"model": {"conv1.weight": torch.zeros(2), 3: torch.zeros(2)}})


def build_code(path):
    return saved(path, {"model": {}, "payload": hf.Reduce(os.system, ("true",))})


def build_legacy_bomb(path):
    storage = hf.FakeStorage("0", torch.DoubleStorage, 200_000_000)
    return hf.write_legacy_torch(path, tensor_tree(w=hf.FakeTensor(storage, (2,))),
                                 {"0": (200_000_000, bytes(8))})


def build_legacy_count(path):
    storage = hf.FakeStorage("0", numel=2)
    return hf.write_legacy_torch(path, tensor_tree(w=hf.FakeTensor(storage, (2,))), {"0": (3, bytes(12))})


def build_legacy_without_data(path):
    storage = hf.FakeStorage("0", numel=2)
    return hf.write_legacy_torch(path, tensor_tree(w=hf.FakeTensor(storage, (2,))), {"0": (2, bytes(8))}, keys=[])


def build_pkl_length_past_the_end(path):
    """A protocol-5 BYTEARRAY8 declaring 2**62 bytes in a 14-byte file (the C unpickler would
    try to allocate it, and CPython prints a stray SystemError when that fails)."""
    path.write_bytes(b"\x80\x05\x96" + (1 << 62).to_bytes(8, "little") + b"abc")
    return path


def pointrend_tree(**arrays) -> dict:
    return {"model": dict(arrays), "__author__": "Detectron2 Model Zoo"}


def build_pkl_reconstruct_bomb(path):
    return hf.write_pickle(path, pointrend_tree(w=hf.numpy_reconstruct((200_000_000,), data=None)))


def build_pkl_setstate_bomb(path):
    return hf.write_pickle(path, pointrend_tree(w=hf.numpy_reconstruct((0,), state_shape=(200_000_000,))))


def build_pkl_object_array(path):
    return hf.write_pickle(path, pointrend_tree(w=np.array([1, "a"], dtype=object)))


def build_pkl_text_array(path):
    name = next(iter(manifest_shapes("PointRend")))
    return hf.write_pickle(path, pointrend_tree(**{name: np.array(["abc", "de"])}))


def build_pkl_bad_scalar(path):
    scalar = hf.Reduce(np._core.multiarray.scalar, (np.dtype("f8"), b"\0\0"))
    return hf.write_pickle(path, {"model": {}, "best": scalar})


def build_pkl_persistent_id(path):
    path.write_bytes(hf.torch_pickle(pointrend_tree(w=hf.FakeTensor(hf.FakeStorage("0"), (1,)))))
    return path


CASES = {  # id: (pack, builder, fragments of the line after "error: <file>: ")
    "garbage bytes": ("RefineNet", build_garbage, "not a readable checkpoint: neither a torch file nor a weights pickle"),
    "zip cut short": ("RefineNet", build_cut_zip, "not a readable torch checkpoint (cut short or corrupted"),
    "zip without data.pkl": ("RefineNet", build_zip_without_pickle, "not a torch checkpoint: the zip has no archive/data.pkl"),
    "storage record missing": ("RefineNet", build_missing_record, "storage record archive/data/0 is missing"),
    "storage larger than its record": ("RefineNet", build_short_record, "storage record archive/data/0 holds 8 bytes, "
                                       "its tensors declare 100000000 float32 values (400000000 bytes)"),
    "deflated record of 1 GiB": ("RefineNet", build_deflated_bomb, "zip record archive/data/0 is compressed "
                                 "(declared 1073741824 bytes unpacked); torch.save writes records uncompressed"),
    "stride-0 fp16 view": ("RefineNet", build_stride0_fp16, "tensor 'model/conv1.weight' shows 500000000 values "
                           "[500000000] from a storage of 1 (stride [0])"),
    "view past its storage": ("RefineNet", build_past_storage, "tensor 'model/w' [4] (stride [1], offset 2) reads "
                              "past the end of its storage of 4 values"),
    "storage far larger than the weights": ("RefineNet", build_oversized_storage, "the weights declare 1073741824 "
                                            "bytes of tensor data, more than 2x the 472631956 bytes of the published "
                                            "RefineNet checkpoint"),
    "sparse tensor": ("RefineNet", build_sparse, "tensor 'model/w' is a sparse tensor; weights are plain dense tensors"),
    "quantized tensor": ("RefineNet", build_quantized, "tensor 'model/w' is a quantized tensor"),
    "meta tensor": ("RefineNet", build_meta, "tensor 'model/w' is a meta tensor (a shape without values)"),
    "nested tensor": ("Wseg", build_nested, "tensor 'model/w' is a nested tensor"),
    "tensor subclass": ("RefineNet", build_subclass, "holds a tensor written by torch._utils._rebuild_wrapper_subclass, "
                        "which is not a plain weight tensor"),
    "bytearray of 1e9": ("RefineNet", build_bytearray_bomb, "not a readable checkpoint (damaged: bytearray() of a "
                         "size instead of data)"),
    "two records of one name": ("RefineNet", build_duplicate_record, "the zip holds two records named archive/data/0"),
    "byteorder neither": ("RefineNet", build_bad_byteorder, "byteorder record is neither 'little' nor 'big'"),
    "nested 200 deep": ("RefineNet", build_deep_nesting, "containers nested more than 64 deep"),
    "a list, not a dict": ("Wseg", build_list_container, "expected a dict of weights, found list"),
    "dict where a tensor is expected": ("RefineNet", build_dict_where_tensor, "entry 'conv1.weight' is a dict, not a tensor"),
    "non-string key": ("RefineNet", build_non_string_key, "the weights have a key 3 (int); tensor names are text"),
    "pickle that runs code": ("MaskRCNN_mmdet", build_code, "refused to load: unpickling it would call posix.system"),
    "legacy storage of 2e8 float64": ("RefineNet", build_legacy_bomb, "storage 0 declares 200000000 float64 values "
                                      "(1600000000 bytes); the file has 8 bytes left"),
    "legacy element count differs": ("3D_HRNet", build_legacy_count, "storage 0 holds 3 values, its tensors declare "
                                     "2 float32 values"),
    "legacy storage without data": ("RefineNet", build_legacy_without_data, "legacy storage list does not match the "
                                    "tensors: 1 storage(s) without data"),
    "pkl _reconstruct of 2e8": ("PointRend", build_pkl_reconstruct_bomb, "numpy _reconstruct declares 200000000 "
                                "values before any data"),
    "pkl array without its bytes": ("PointRend", build_pkl_setstate_bomb, "tensor 'model/w' declares [200000000] "
                                    "float64 (1600000000 bytes); the file holds 0 bytes for it"),
    "pkl length field past the end": ("PointRend", build_pkl_length_past_the_end, "(UnpicklingError: BYTEARRAY8 "
                                      "declares 4611686018427387904 bytes, 3 are left)"),
    "pkl object array": ("PointRend", build_pkl_object_array, "tensor 'model/w' is a numpy object array"),
    "pkl text array": ("PointRend", build_pkl_text_array, "is a numpy <U3 array (text), not numbers"),
    "pkl scalar without its bytes": ("PointRend", build_pkl_bad_scalar, "damaged: a numpy float64 scalar without "
                                     "its 8 bytes"),
    "pkl holding torch tensors": ("PointRend", build_pkl_persistent_id, "damaged: it names torch._utils._rebuild_tensor_v2: "
                                   "the pickle of a torch file without its tensor data"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_checkpoint_is_one_line(case, tmp_path, out_dir, capsys):
    pack, builder, fragment = CASES[case]
    suffix = ".pkl" if pack == "PointRend" else ".pth"
    checkpoint = builder(tmp_path / f"weights{suffix}")
    line = expect_refused(pack, checkpoint, out_dir, capsys, fragment)
    assert len(line) < 300, line


# ---- complete checkpoints, one stored value per tensor ------------------------------------------

_STORAGE_CLASS = {"float32": torch.FloatStorage, "int64": torch.LongStorage}


def compact_state(model_name: str, half: bool = False, overrides: dict | None = None) -> tuple[dict, dict]:
    """Every manifest tensor as a stride-0 view of one stored value (running_var 1, others 0.01,
    counters 0); `overrides` replace entries by real tensors (name -> torch.Tensor)."""
    overrides = overrides or {}
    float_class = torch.HalfStorage if half else torch.FloatStorage
    values = {"w": (float_class, 0.01), "v": (float_class, 1.0), "n": (torch.LongStorage, 0)}
    storages = {key: hf.FakeStorage(key, cls, 1) for key, (cls, _) in values.items()}
    records = {key: np.asarray([value], _numpy_of(cls)).tobytes() for key, (cls, value) in values.items()}
    state = OrderedDict()
    for name, (shape, dtype) in manifest_shapes(model_name).items():
        if name in overrides:
            state[name] = _real_tensor(overrides[name], f"o{len(records)}", records)
            continue
        key = "n" if dtype == "int64" else "v" if name.endswith("running_var") else "w"
        state[name] = hf.FakeTensor(storages[key], shape, stride=(0,) * len(shape))
    return state, records


def _real_tensor(tensor: torch.Tensor, key: str, records: dict) -> hf.FakeTensor:
    storage_class = {torch.float32: torch.FloatStorage, torch.int64: torch.LongStorage, torch.bool: torch.BoolStorage,
                     torch.complex64: torch.ComplexFloatStorage, torch.float64: torch.DoubleStorage}[tensor.dtype]
    records[key] = tensor.contiguous().numpy().tobytes()
    return hf.FakeTensor(hf.FakeStorage(key, storage_class, tensor.numel()), tensor.shape)


def wseg_with(path: Path, **overrides) -> Path:
    state, records = compact_state("Wseg", overrides=overrides)
    return hf.write_torch_zip(path, state, records)


def _bn_var_with(bad_values) -> torch.Tensor:
    values = torch.ones(64)
    values[: len(bad_values)] = torch.tensor(bad_values)
    return values


VALUE_CASES = {  # id: (tensor overrides of a complete Wseg checkpoint, fragments)
    "int64 weight": ({"conv1a.weight": torch.ones(64, 3, 3, 3, dtype=torch.int64)},
                     "tensor 'conv1a.weight' is int64, expected a floating-point tensor (the network's is float32)"),
    "complex weight": ({"conv1a.weight": torch.ones(64, 3, 3, 3, dtype=torch.complex64)},
                       "tensor 'conv1a.weight' is complex64, expected a floating-point tensor"),
    "bool weight": ({"conv1a.weight": torch.ones(64, 3, 3, 3, dtype=torch.bool)},
                    "tensor 'conv1a.weight' is bool, expected a floating-point tensor"),
    "float counter": ({"b2.bn_branch2a.num_batches_tracked": torch.tensor(3.0)},
                      "tensor 'b2.bn_branch2a.num_batches_tracked' is float32, expected an integer tensor "
                      "(the network's is int64)"),
    "NaN in a BatchNorm variance": ({"b2.bn_branch2a.running_var": _bn_var_with([float("nan")])},
                                    "tensor 'b2.bn_branch2a.running_var' holds 1 NaN/Inf value(s) of 64"),
    "Inf in weights": ({"conv1a.weight": torch.full((64, 3, 3, 3), float("inf")),
                        "b2.bn_branch2a.weight": _bn_var_with([float("-inf")])},
                       "tensor 'conv1a.weight' holds 1728 NaN/Inf value(s) of 1728; 1 more tensor(s) hold NaN/Inf too"),
    "negative BatchNorm variance": ({"b2.bn_branch2a.running_var": _bn_var_with([-0.5, -1.0, -2.0])},
                                    "tensor 'b2.bn_branch2a.running_var' holds 3 negative value(s) (lowest -2): a "
                                    "BatchNorm running variance is >= 0"),
    "wrong shape": ({"conv1a.weight": torch.ones(64, 3, 5, 5)},
                    "checkpoint does not match WsegNet: 1 wrong shape (conv1a.weight [64, 3, 5, 5] vs [64, 3, 3, 3])"),
}


@pytest.mark.parametrize("case", list(VALUE_CASES))
def test_bad_values_in_a_complete_checkpoint(case, tmp_path, out_dir, capsys):
    overrides, fragment = VALUE_CASES[case]
    checkpoint = wseg_with(tmp_path / "model_enc_e020Xs0.928.pth", **overrides)
    expect_refused("Wseg", checkpoint, out_dir, capsys, fragment)


def test_a_missing_tensor_is_named(tmp_path, out_dir, capsys):
    state, records = compact_state("Wseg")
    del state["conv1a.weight"]
    checkpoint = hf.write_torch_zip(tmp_path / "w.pth", state, records)
    expect_refused("Wseg", checkpoint, out_dir, capsys, "checkpoint does not match WsegNet: 1 missing (conv1a.weight)")


def test_half_precision_checkpoint_exports_and_says_so(tmp_path, out_dir, capsys):
    """Valid but odd: published files are sometimes saved in float16. Converted, one warning."""
    state, records = compact_state("Wseg", half=True)
    checkpoint = hf.write_torch_zip(tmp_path / "half.pth", state, records)
    before = snapshot(out_dir)
    code, lines = export("Wseg", checkpoint, out_dir, capsys)
    assert code == 0, lines
    assert lines == [f"[WARNING] {checkpoint}: converted 259 float16 tensor(s) to float32 (the network's dtypes)"]
    assert (out_dir / "model.onnx").stat().st_size > 0
    assert {k: v for k, v in snapshot(out_dir).items() if k != "model.onnx"} == before


def test_training_checkpoint_with_optimizer_state_loads_quietly(tmp_path, capsys):
    """Valid: extra top-level keys (optimizer, epoch) next to the weights are ignored."""
    state, records = compact_state("3D_HRNet")
    momentum = {"momentum_buffer": _real_tensor(torch.ones(8), "m", records)}
    tree = {"state_dict": {f"model.{name}": value for name, value in state.items()},
            "optimizer": {"state": {0: momentum}, "param_groups": [{"lr": 0.01, "params": [0]}]}, "epoch": 484}
    checkpoint = hf.write_torch_zip(tmp_path / "checkpoint.pth.tar", tree, records)
    network = pack_module("3D_HRNet", "model").load_pretrained(checkpoint)
    assert float(network.state_dict()["conv1.weight"][0, 0, 0, 0]) == pytest.approx(0.01)
    assert capsys.readouterr().err == ""


def test_one_smoke_case_through_the_real_command_line(tmp_path, out_dir):
    checkpoint = build_stride0_fp16(tmp_path / "RefineNet_910.pth.tar")
    before = snapshot(out_dir)
    result = subprocess.run([sys.executable, "RefineNet_pth2onnx.py", "--input-file", str(checkpoint),
                             "--output-file", str(out_dir / "model.onnx")],
                            cwd=REPO_ROOT / "RefineNet", capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert error_lines(result) == [f"error: {checkpoint}: tensor 'model/conv1.weight' shows 500000000 values "
                                   "[500000000] from a storage of 1 (stride [0]): a saved weight stores each of "
                                   "its values"]
    assert snapshot(out_dir) == before


# ---- memory: bombs are refused before their declared size is allocated ----------------------

BOMBS = {  # id: (builder, layout name in its pack, fragment)
    "pkl _reconstruct of 2e8 float64": (build_pkl_reconstruct_bomb, "PointRend", "before any data"),
    "pkl __setstate__ of 2e8 float64": (build_pkl_setstate_bomb, "PointRend", "the file holds 0 bytes"),
    "torch zip stride-0 fp16 view of 5e8": (build_stride0_fp16, "RefineNet", "from a storage of 1"),
    "torch zip deflated record of 1 GiB": (build_deflated_bomb, "RefineNet", "is compressed"),
    "torch zip 1 GiB storage under a small weight": (build_oversized_storage, "RefineNet", "more than 2x"),
    "legacy torch storage of 2e8 float64": (build_legacy_bomb, "RefineNet", "the file has 8 bytes left"),
    "bytearray(1e9) in the pickle": (build_bytearray_bomb, "RefineNet", "bytearray() of a size"),
}

_MEASURE = """
import json, resource, sys
from common.weights.checkpoint import read_checkpoint
from common.cli import UserError
from common.pipeline.packs import pack_module
layout = pack_module(sys.argv[3], "model").CHECKPOINT_LAYOUT
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_checkpoint(sys.argv[2], layout)
    message = None
except UserError as err:
    message = str(err)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_mb": (after - before) / 1024, "message": message}))
"""


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_bomb_is_refused_without_allocating_what_it_declares(bomb, tmp_path):
    builder, pack, fragment = BOMBS[bomb]
    checkpoint = builder(tmp_path / ("bomb.pkl" if pack == "PointRend" else "bomb.pth"))
    assert checkpoint.stat().st_blocks * 512 < 2 << 20  # small on disk (the 1 GiB one is a hole)
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(REPO_ROOT), str(checkpoint), pack],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["message"] and fragment in measured["message"], measured
    assert measured["growth_mb"] < PEAK_GROWTH_LIMIT_MB, measured


# ---- random damage never gives a traceback ----------------------------------------------------

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)


TINY_LAYOUT = WeightsLayout(sub_keys=("model",))


def _tiny_files() -> dict[str, bytes]:
    state = {k: v.clone() for k, v in Tiny().state_dict().items()}
    files = {}
    for kind in ("zip", "legacy"):
        buffer = io.BytesIO()
        torch.save({"model": state, "epoch": 1}, buffer, _use_new_zipfile_serialization=kind == "zip")
        files[kind] = buffer.getvalue()
    files["pkl"] = pickle.dumps({"model": {k: v.numpy() for k, v in state.items()}}, protocol=2)
    return files


TINY_FILES = _tiny_files()


def _load_tiny(path: Path, capsys) -> tuple[int, list[str]]:
    def main(args):
        load_checkpoint_into(Tiny(), args, layout=TINY_LAYOUT)
        return 0
    code = cli.run_script(main, lambda argv: path)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(TINY_FILES)), data=st.data())
def test_random_damage_to_a_valid_checkpoint_loads_or_is_one_line(kind, data, tmp_path, capsys):
    content = bytearray(TINY_FILES[kind])
    damage = data.draw(st.sampled_from(["flip", "cut", "splice"]))
    if damage == "cut":
        content = content[: data.draw(st.integers(1, len(content) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            at = data.draw(st.integers(0, len(content) - 1))
            if damage == "flip":
                content[at] ^= 1 << data.draw(st.integers(0, 7))
            else:
                content[at:at + 4] = data.draw(st.binary(min_size=4, max_size=4))
    path = tmp_path / f"damaged.{kind}"
    path.write_bytes(bytes(content))
    code, lines = _load_tiny(path, capsys)
    assert code in (0, 2), lines
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), lines


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x05", TINY_FILES["legacy"][:14]]),
       body=st.binary(min_size=1, max_size=400))
def test_random_bytes_are_one_line(head, body, tmp_path, capsys):
    path = tmp_path / "random.pth"
    path.write_bytes(head + body)
    code, lines = _load_tiny(path, capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {path}: "), lines
