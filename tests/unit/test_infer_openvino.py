"""`common.infer --backend openvino` and `--precision`: same files as ONNX Runtime, refusals in one line."""
import json

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, strategies as st
from onnx import TensorProto, helper
from torch import nn

from common import infer
from common.cli import UserError
from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
from common.runtime.runner import run_inference
from common.runtime import precision as precision_module
from common.runtime.openvino_backend import OpenVinoBackend, refuse_unsupported_precision, unconverted_ops
from common.runtime.precision import NATIVE_FLAGS, native_support
from helpers import error_lines, expect_one_line, run_cli, run_script

# fp32 on both engines: different kernels (MLAS vs oneDNN) sum in different orders; on this
# 3-layer net the largest difference seen is about 1e-6 of the output range.
FP32_REL_TOL = 1e-5


class SmallConvNet(nn.Module):
    """Two 3x3 convolutions with ReLU, then logits (float) and their argmax map (int64)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(16, 5, 1)

    def forward(self, image):
        logits = self.head(self.features(image))
        return logits, logits.argmax(1)


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ov") / "conv.onnx"
    torch.onnx.export(SmallConvNet().eval(), (torch.randn(1, 3, 12, 16),), str(path), input_names=["image"],
                      output_names=["logits", "classes"], opset_version=13, dynamo=False,
                      dynamic_axes={n: {0: "batch_size"} for n in ("image", "logits", "classes")})
    return path


@pytest.fixture
def conv_bins(tmp_path):
    rng = np.random.default_rng(5)
    folder = tmp_path / "bins"
    folder.mkdir()
    for stem in ("s1", "s2", "s3"):
        rng.standard_normal((3, 12, 16), dtype=np.float32).tofile(folder / f"{stem}.bin")
    return folder


def _read(folder, stem):
    return (np.fromfile(folder / f"{stem}_0.bin", np.float32).reshape(5, 12, 16),
            np.fromfile(folder / f"{stem}_1.bin", np.int64).reshape(12, 16))


def test_openvino_fp32_writes_the_files_of_onnxruntime_within_tolerance(tmp_path, conv_model, conv_bins):
    # batch 2 over 3 samples: the dynamic batch axis and a padded last batch
    run_inference(OnnxRuntimeBackend(conv_model), str(conv_bins), tmp_path / "out", "ort", batchsize=2, progress=False)
    summary = run_inference(OpenVinoBackend(conv_model, threads=1), str(conv_bins), tmp_path / "out", "ov",
                            batchsize=2, progress=False)
    assert sorted(p.name for p in (tmp_path / "out" / "ov").iterdir()) == \
        sorted(p.name for p in (tmp_path / "out" / "ort").iterdir())
    for stem in ("s1", "s2", "s3"):
        ref_logits, ref_classes = _read(tmp_path / "out" / "ort", stem)
        logits, classes = _read(tmp_path / "out" / "ov", stem)
        assert np.abs(logits - ref_logits).max() <= FP32_REL_TOL * np.ptp(ref_logits)
        np.testing.assert_array_equal(classes, ref_classes)
    assert summary["samples"] == 3 and summary["batchsize"] == 2


def test_summary_records_backend_precision_and_cpu(tmp_path, conv_model, conv_bins):
    run_inference(OpenVinoBackend(conv_model), str(conv_bins), tmp_path / "out", "ov", progress=False)
    on_disk = json.loads((tmp_path / "out" / "ov_summary.json").read_text())
    assert on_disk["backend"] == "openvino" and on_disk["precision"] == "fp32"
    assert on_disk["cpu"] and isinstance(on_disk["cpu_isa"], list)
    assert on_disk["backend_version"].startswith("20")
    for key in ("NPU_compute_time", "H2D_latency", "D2H_latency", "throughput", "filesinfo", "batchsize"):
        assert key in on_disk  # ais_bench's names stay


def test_fp32_is_asked_for_explicitly(conv_model):
    # On a CPU with AMX, OpenVINO's own default compute type is bf16: fp32 must be set.
    assert str(OpenVinoBackend(conv_model).compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"


@pytest.mark.skipif(not native_support("bf16"), reason="this CPU has no native bf16")
def test_bf16_runs_in_bf16_and_returns_float32(tmp_path, conv_model, conv_bins):
    backend = OpenVinoBackend(conv_model, precision="bf16")
    assert "bfloat16" in str(backend.compiled.get_property("INFERENCE_PRECISION_HINT"))
    feeds = {"image": np.fromfile(conv_bins / "s1.bin", np.float32).reshape(1, 3, 12, 16)}
    logits, classes = backend.run(feeds)
    reference = OnnxRuntimeBackend(conv_model).run(feeds)[0]
    assert logits.dtype == np.float32 and classes.dtype == np.int64
    difference = np.abs(logits - reference).max() / np.ptp(reference)
    # bf16 keeps 8 significant bits: about 0.4 % per rounding; a few layers stay well below 5 %,
    # yet the result is not the fp32 one
    assert 1e-5 < difference < 0.05


def test_resume_with_openvino_gives_the_same_files(tmp_path, conv_model, conv_bins):
    argv = ["--model", conv_model, "--input", conv_bins, "--backend", "openvino"]
    run_script(None, "common.infer", *argv, "--output", tmp_path / "full", "--output_dirname", "r")
    run_script(None, "common.infer", *argv, "--output", tmp_path / "part", "--output_dirname", "r")
    for name in ("s3_0.bin", "s3_1.bin"):
        (tmp_path / "part" / "r" / name).unlink()  # as if killed before s3 finished
    run_script(None, "common.infer", *argv, "--output", tmp_path / "part", "--output_dirname", "r", "--resume")
    summary = json.loads((tmp_path / "part" / "r_summary.json").read_text())
    assert summary["samples_skipped_by_resume"] == 2 and summary["backend"] == "openvino"
    for path in (tmp_path / "full" / "r").iterdir():
        assert path.read_bytes() == (tmp_path / "part" / "r" / path.name).read_bytes()


# ---- refusals: one line, exit code 2 ---------------------------------------------------------

def test_onnxruntime_refuses_bf16_in_one_line(tmp_path, conv_model, conv_bins):
    result = run_script(None, "common.infer", "--model", conv_model, "--input", conv_bins, "--output",
                        tmp_path / "o", "--precision", "bf16", check=False)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "ONNX Runtime's CPU provider runs these graphs in fp32 only" in lines[0]
    assert "--backend openvino --precision bf16" in lines[0]


def test_precision_the_cpu_lacks_is_refused_in_one_line(tmp_path, conv_model, conv_bins, monkeypatch, capsys):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2", "fma", "avx512f"}))
    code, lines = run_cli(infer, "--model", conv_model, "--input", conv_bins, "--output", tmp_path / "o",
                          "--backend", "openvino", "--precision", "bf16", capsys=capsys)
    # where OpenVINO lists BF16 (any AVX-512 CPU) the line names the missing flags instead
    expect_one_line(code, lines, "--precision bf16", "use --precision fp32")
    assert not (tmp_path / "o").exists()


def test_precision_openvino_does_not_list_is_refused(monkeypatch):
    class CoreWithoutFp16:
        def get_property(self, device, name):
            assert name == "OPTIMIZATION_CAPABILITIES"
            return ["FP32", "INT8", "BF16"]
    with pytest.raises(UserError, match=r"does not offer FP16 on this CPU .*lists FP32, INT8, BF16"):
        refuse_unsupported_precision(CoreWithoutFp16(), "fp16")
    refuse_unsupported_precision(CoreWithoutFp16(), "fp32")  # fp32 needs no capability


def test_pytorch_reference_refuses_bf16_without_native_support(monkeypatch):
    from common.runtime.torch_backend import TorchBackend
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.raises(UserError, match="PyTorch .* would emulate bf16"):
        TorchBackend("never_read.onnx", "never_read.pth", precision="bf16")


@given(st.sets(st.sampled_from(sorted({f for groups in NATIVE_FLAGS.values() for g in groups for f in g}
                                      | {"avx2", "avx512f"}))))
def test_native_support_needs_one_whole_group_of_flags(flags):
    for precision, groups in NATIVE_FLAGS.items():
        expected = any(set(group) <= flags for group in groups)
        assert native_support(precision, frozenset(flags)) == expected
    assert native_support("fp32", frozenset(flags))


def _mel_model(path):
    """One standard ONNX op (MelWeightMatrix, opset 17) that ONNX Runtime runs and OpenVINO cannot read."""
    names = ("num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz")
    kinds = (TensorProto.INT64,) * 3 + (TensorProto.FLOAT,) * 2
    graph = helper.make_graph([helper.make_node("MelWeightMatrix", list(names), ["weights"])], "mel",
                              [helper.make_tensor_value_info(n, k, []) for n, k in zip(names, kinds)],
                              [helper.make_tensor_value_info("weights", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_model_openvino_cannot_read_is_one_line_naming_file_and_op(tmp_path, conv_bins, capsys):
    model = _mel_model(tmp_path / "mel.onnx")
    OnnxRuntimeBackend(model)  # a valid model: the refusal is OpenVINO's limit, not a broken file
    code, lines = run_cli(infer, "--model", model, "--input", conv_bins, "--output", tmp_path / "o",
                          "--backend", "openvino", capsys=capsys)
    expect_one_line(code, lines, f"{model}: OpenVINO", "cannot read the model", "MelWeightMatrix",
                    "--backend onnxruntime")


def test_unconverted_ops_are_read_from_the_frontend_report():
    report = ("Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'false' failed at x.cpp:151:\n"
              "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted.\nSummary:\n"
              "-- No conversion rule found for operations: RegexFullMatch-20, segzoo.Frob\n")
    assert unconverted_ops(report) == ["RegexFullMatch-20", "segzoo.Frob"]
    assert unconverted_ops("something else went wrong") == []


def test_graph_tagged_atc_only_is_refused_by_openvino(tmp_path, conv_model):
    from common.runtime.graph import META_ATC_ONLY, set_metadata
    model = onnx.load(str(conv_model))
    set_metadata(model, {META_ATC_ONLY: "softmax over all values at opset 11"})
    onnx.save(model, str(tmp_path / "atc_only.onnx"))
    with pytest.raises(UserError, match="edited for ATC only.*softmax over all values"):
        OpenVinoBackend(tmp_path / "atc_only.onnx")


# ---- detections matched one to one (the accuracy cost of MaskRCNN_mmdet in bench/engines.py) ----

def _detections(rng, count, pad=100):
    boxes = np.zeros((pad, 5), np.float32)
    labels = np.full(pad, -1, np.int64)
    xy = rng.uniform(0, 500, (count, 2))
    boxes[:count, :2], boxes[:count, 2:4] = xy, xy + rng.uniform(10, 100, (count, 2))
    boxes[:count, 4] = np.sort(rng.uniform(0.05, 1, count))[::-1]
    labels[:count] = rng.integers(0, 80, count)
    return boxes, labels


@given(st.integers(0, 30), st.integers(0, 2 ** 31))
def test_detections_match_themselves_and_turn_when_one_changes(count, seed):
    from common.eval.parity import match_detections
    rng = np.random.default_rng(seed)
    boxes, labels = _detections(rng, count)
    order = rng.permutation(100)  # the candidate lists the same objects in another order
    same = match_detections(boxes, labels, boxes[order], labels[order])
    assert same["matched"] == count and same["fraction_matched"] == 1.0
    if count:
        moved = boxes.copy()
        moved[0, 4] += 2e-3  # a score beyond the 1e-3 tolerance: that pair no longer matches
        assert match_detections(boxes, labels, moved, labels)["matched"] == count - 1
        relabelled = labels.copy()
        relabelled[0] = (relabelled[0] + 1) % 80
        assert match_detections(boxes, labels, boxes, relabelled)["fraction_matched"] == (count - 1) / count
