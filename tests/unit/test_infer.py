import json

import numpy as np
import pytest
import torch
from torch import nn

from common.files.bins import write_bin
from common.cli import UserError
from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
from common.infer import parse_args
from common.runtime.runner import run_inference
from helpers import error_lines, run_script


class TwoInputs(nn.Module):
    """out0 = conv(a) + b (float), out1 = per-sample argmax map (int64)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, a, b):
        out = self.conv(a) + b
        return out, out.argmax(1)


def export_tiny(path, dynamic: bool, batch: int = 1):
    torch.manual_seed(0)
    model = TwoInputs().eval()
    dummy = (torch.randn(batch, 3, 4, 5), torch.randn(batch, 2, 4, 5))
    axes = {n: {0: "b"} for n in ("a", "b", "out", "cls")} if dynamic else None
    torch.onnx.export(model, dummy, str(path), input_names=["a", "b"], output_names=["out", "cls"],
                      dynamic_axes=axes, opset_version=11, dynamo=False)
    return model


def make_inputs(root, stems):
    rng = np.random.default_rng(1)
    arrays = {}
    for stem in stems:
        a = rng.standard_normal((3, 4, 5)).astype(np.float32)
        b = rng.standard_normal((2, 4, 5)).astype(np.float32)
        write_bin(root / "a" / f"{stem}.bin", a)
        write_bin(root / "b" / f"{stem}.bin", b)
        arrays[stem] = (a, b)
    return arrays


@pytest.fixture(scope="module")
def tiny_dynamic(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny.onnx"
    return path, export_tiny(path, dynamic=True)


def test_outputs_match_the_model_and_partial_batch_is_not_written(tmp_path, tiny_dynamic):
    path, model = tiny_dynamic
    stems = ["img1", "img2", "img10", "img3", "img4"]
    arrays = make_inputs(tmp_path, stems)
    summary = run_inference(OnnxRuntimeBackend(path), f"{tmp_path}/a,{tmp_path}/b", tmp_path / "out",
                            "run", batchsize=2, progress=False)
    written = sorted(p.name for p in (tmp_path / "out" / "run").iterdir())
    assert written == sorted(f"{s}_{k}.bin" for s in stems for k in (0, 1))
    for stem, (a, b) in arrays.items():
        with torch.no_grad():
            ref, ref_cls = model(torch.from_numpy(a)[None], torch.from_numpy(b)[None])
        got = np.fromfile(tmp_path / "out" / "run" / f"{stem}_0.bin", np.float32).reshape(2, 4, 5)
        np.testing.assert_allclose(got, ref[0].numpy(), rtol=1e-5, atol=1e-6)
        cls = np.fromfile(tmp_path / "out" / "run" / f"{stem}_1.bin", np.int64).reshape(4, 5)
        np.testing.assert_array_equal(cls, ref_cls[0].numpy())
    assert summary["NPU_compute_time"]["count"] == 3  # ceil(5 / 2) batches
    assert summary["samples"] == 5
    on_disk = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert set(on_disk["NPU_compute_time"]) == {"min", "max", "mean", "median", "percentile(99%)", "count"}
    assert on_disk["filesinfo"]["0"]["infiles"][0].endswith("img1.bin")  # natural order
    assert on_disk["filesinfo"]["0"]["infiles"][1].endswith("b/img1.bin")  # paired by stem


def test_static_batch_model_dictates_the_batch(tmp_path):
    export_tiny(tmp_path / "static.onnx", dynamic=False, batch=4)
    make_inputs(tmp_path, ["x1", "x2", "x3"])
    backend = OnnxRuntimeBackend(tmp_path / "static.onnx")
    summary = run_inference(backend, f"{tmp_path}/a,{tmp_path}/b", tmp_path / "o", "r", progress=False)
    assert summary["batchsize"] == 4 and summary["samples"] == 3
    assert len(list((tmp_path / "o" / "r").glob("*_0.bin"))) == 3
    with pytest.raises(UserError, match="static batch 4"):
        run_inference(backend, f"{tmp_path}/a,{tmp_path}/b", tmp_path / "o", "r", batchsize=2, progress=False)


def test_wrong_size_bin_fails_before_any_output(tmp_path, tiny_dynamic):
    make_inputs(tmp_path, ["s1", "s2"])
    (tmp_path / "a" / "s2.bin").write_bytes(b"\0" * 17)
    with pytest.raises(UserError, match=r"s2.bin: 17 bytes, expected 240"):
        run_inference(OnnxRuntimeBackend(tiny_dynamic[0]), f"{tmp_path}/a,{tmp_path}/b", tmp_path / "out", "r",
                      progress=False)
    assert not (tmp_path / "out" / "r").exists() or not any((tmp_path / "out" / "r").iterdir())


def test_unpaired_second_input_is_named(tmp_path, tiny_dynamic):
    make_inputs(tmp_path, ["s1", "s2"])
    (tmp_path / "b" / "s2.bin").unlink()
    with pytest.raises(UserError, match="no file for 1 sample.*s2"):
        run_inference(OnnxRuntimeBackend(tiny_dynamic[0]), f"{tmp_path}/a,{tmp_path}/b", tmp_path / "o", "r",
                      progress=False)


def test_resume_skips_finished_samples_and_gives_the_same_files(tmp_path, tiny_dynamic):
    make_inputs(tmp_path, ["r1", "r2", "r3"])
    backend = OnnxRuntimeBackend(tiny_dynamic[0])
    inputs = f"{tmp_path}/a,{tmp_path}/b"
    run_inference(backend, inputs, tmp_path / "full", "r", progress=False)
    run_inference(backend, inputs, tmp_path / "part", "r", progress=False)
    (tmp_path / "part" / "r" / "r3_0.bin").unlink()  # as if killed before r3 finished
    (tmp_path / "part" / "r" / "r3_1.bin").unlink()
    summary = run_inference(backend, inputs, tmp_path / "part", "r", resume=True, progress=False)
    assert summary["samples_skipped_by_resume"] == 2
    for path in (tmp_path / "full" / "r").iterdir():
        assert path.read_bytes() == (tmp_path / "part" / "r" / path.name).read_bytes()


def test_npy_and_txt_output_formats(tmp_path, tiny_dynamic):
    make_inputs(tmp_path, ["n1"])
    inputs = f"{tmp_path}/a,{tmp_path}/b"
    run_inference(OnnxRuntimeBackend(tiny_dynamic[0]), inputs, tmp_path / "o", "npy", outfmt="NPY", progress=False)
    assert np.load(tmp_path / "o" / "npy" / "n1_0.npy").shape == (2, 4, 5)
    run_inference(OnnxRuntimeBackend(tiny_dynamic[0]), inputs, tmp_path / "o", "txt", outfmt="TXT", progress=False)
    assert len((tmp_path / "o" / "txt" / "n1_0.txt").read_text().splitlines()) == 8


def test_cli_truncated_bin_is_one_line_and_exit_2(tmp_path, tiny_dynamic):
    make_inputs(tmp_path, ["c1"])
    (tmp_path / "a" / "c1.bin").write_bytes(b"\0" * 8)
    result = run_script(None, "common.infer", "--model", tiny_dynamic[0], "--input",
                        f"{tmp_path}/a,{tmp_path}/b", "--output", tmp_path / "o", check=False)
    assert result.returncode == 2
    assert error_lines(result) == [f"error: {tmp_path}/a/c1.bin: 8 bytes, expected 240 for input 'a' "
                                   "of tiny.onnx (float32 (3, 4, 5)): the model input shape does not "
                                   "match the bins (wrong size, dtype or a cut file)"]


def test_om_without_ais_bench_is_a_clear_error(tmp_path):
    (tmp_path / "m.om").write_bytes(b"x")
    result = run_script(None, "common.infer", "--model", tmp_path / "m.om", "--input", tmp_path,
                        "--output", tmp_path / "o", check=False)
    assert result.returncode == 2 and "ais_bench, which is not installed" in result.stderr


def test_output_dirname_needs_output():
    with pytest.raises(SystemExit):
        parse_args(["--model", "m.onnx", "--output_dirname", "x"])


def test_graph_tagged_atc_only_is_refused(tmp_path, tiny_dynamic):
    import onnx
    from common.runtime.graph import META_ATC_ONLY, set_metadata
    model = onnx.load(str(tiny_dynamic[0]))
    set_metadata(model, {META_ATC_ONLY: "softmax over all values at opset 11"})
    onnx.save(model, str(tmp_path / "atc_only.onnx"))
    with pytest.raises(UserError, match="edited for ATC only.*softmax over all values"):
        OnnxRuntimeBackend(tmp_path / "atc_only.onnx")
