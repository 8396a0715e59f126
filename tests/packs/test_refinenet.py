"""RefineNet pack: checkpoint contract, preprocessing facts, export parity, end to end."""
import json
import shutil
from collections import OrderedDict

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.files.bins import read_bin, write_bin
from common.data.voc import VOCSegmentation
from common.weights.manifest import load_manifest
from common.weights.checkpoint import read_checkpoint
from common.weights.demo import save_torch_checkpoint
from common.pipeline.packs import pack_module
from refinenet.config import output_shapes
from helpers import assert_classes_agree, error_lines, run_script

SIZE = 64  # small input for tests; the guide uses 500
model_py = pack_module("RefineNet", "model")
preprocess_py = pack_module("RefineNet", "RefineNet_preprocess")
postprocess_py = pack_module("RefineNet", "RefineNet_postprocess")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return model_py.write_demo_checkpoint(tmp_path_factory.mktemp("w") / "RefineNet_910.pth.tar", seed=1)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, checkpoint, synthetic_voc):
    """Export, preprocess, both inference runs and both postprocesses, via the scripts."""
    work = tmp_path_factory.mktemp("rf")
    onnx_path = work / "RefineNet_910.onnx"
    run_script("RefineNet", "RefineNet_pth2onnx.py", "--input-file", checkpoint, "--output-file", onnx_path,
               "--size", SIZE)
    run_script("RefineNet", "RefineNet_preprocess.py", "--root-dir", synthetic_voc / "VOCdevkit" / "VOC2012",
               "--bin-dir", work / "bins", "--size", SIZE)
    run_script(None, "common.infer", "--model", onnx_path, "--input", work / "bins", "--output",
               work / "result", "--output_dirname", "ort", "--batchsize", 2)
    run_script(None, "common.torch_infer", "--model", onnx_path, "--checkpoint", checkpoint, "--input",
               work / "bins", "--output", work / "result", "--output_dirname", "torch")
    printed = {}
    for name in ("ort", "torch"):
        result = run_script("RefineNet", "RefineNet_postprocess.py", "--val-dir", synthetic_voc, "--result-dir",
                            work / "result" / name)
        printed[name] = result.stdout.strip().splitlines()[-1]
    return work, printed


def test_model_matches_the_manifest_key_for_key():
    manifest = load_manifest("RefineNet")["tensors"]
    state = model_py.build_model().state_dict()
    assert list(state) == [name for name, _, _ in manifest]
    for name, shape, dtype in manifest:
        assert list(state[name].shape) == shape, name
        assert str(state[name].dtype) == f"torch.{dtype}", name


@pytest.mark.parametrize("module_prefix", [False, True])
def test_demo_checkpoint_loads_strictly_with_and_without_module_prefix(tmp_path, module_prefix):
    path = model_py.write_demo_checkpoint(tmp_path / "c.pth.tar", seed=2, module_prefix=module_prefix)
    stored = read_checkpoint(path)
    assert set(stored) == {"model", "epoch", "optimisers", "schedulers", "best_val"}
    assert all(k.startswith("module.") == module_prefix for k in stored["model"])
    net = model_py.load_pretrained(path)
    key = "module.clf_conv.weight" if module_prefix else "clf_conv.weight"
    torch.testing.assert_close(net.clf_conv.weight, stored["model"][key])


def test_renamed_key_fails_with_a_one_line_report(tmp_path, checkpoint):
    stored = read_checkpoint(checkpoint)
    state = OrderedDict(stored["model"])
    state["clf_conv.weightX"] = state.pop("clf_conv.weight")
    save_torch_checkpoint(tmp_path / "bad.pth.tar", {**stored, "model": state})
    result = run_script("RefineNet", "RefineNet_pth2onnx.py", "--input-file", tmp_path / "bad.pth.tar",
                        "--output-file", tmp_path / "bad.onnx", "--size", SIZE, check=False)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1
    assert "1 missing (clf_conv.weight)" in lines[0] and "1 unexpected (clf_conv.weightX)" in lines[0]
    assert not (tmp_path / "bad.onnx").exists()


def test_last_crp_pools_with_an_identity_and_the_others_5x5():
    net = model_py.build_model()
    kernels = {g: getattr(net, f"mflow_conv_g{g}_pool")[0].pool.kernel_size for g in (1, 2, 3, 4)}
    assert kernels == {1: 5, 2: 5, 3: 5, 4: 1}
    x = torch.randn(1, 256, 9, 9)
    assert torch.equal(net.mflow_conv_g4_pool[0].pool(x), x)


def test_decoder_upsamples_to_the_exact_skip_sizes():
    net = model_py.build_model()
    with torch.no_grad():
        features = net.trunk(torch.zeros(1, 3, 500, 500))
        logits = net(torch.zeros(1, 3, 500, 500)[:, :, :SIZE, :SIZE])
    assert [f.shape[-1] for f in features] == [125, 63, 32, 16]
    assert logits.shape == (1, 21, output_shapes((SIZE, SIZE))[0][1], output_shapes((SIZE, SIZE))[0][1])


def test_preprocess_pads_centred_with_zero_and_normalises():
    rgb = np.full((40, 64, 3), 200, dtype=np.uint8)  # long side = SIZE: no resize
    chw, box = preprocess_py.preprocess_image(rgb, SIZE)
    assert chw.shape == (3, SIZE, SIZE) and chw.dtype == np.float32
    assert (box.pad_top, box.pad_left, box.resized_hw) == (12, 0, (40, 64))
    assert np.all(chw[:, :12] == 0) and np.all(chw[:, 52:] == 0)
    expected = (200 - np.array([0.485, 0.456, 0.406]) * 255) / (np.array([0.229, 0.224, 0.225]) * 255)
    np.testing.assert_allclose(chw[:, 30, 10], expected, rtol=1e-6)


def test_preprocess_resizes_only_when_the_long_side_differs():
    rgb = np.random.default_rng(0).integers(0, 255, (50, 100, 3), dtype=np.uint8)
    chw, box = preprocess_py.preprocess_image(rgb, SIZE)
    assert box.resized_hw == (32, 64)  # round(50 * 0.64) = 32
    resized = cv2.resize(rgb.astype(np.float32), (64, 32), interpolation=cv2.INTER_LINEAR)
    restored = chw[:, 16:48, :].transpose(1, 2, 0) * (np.array([0.229, 0.224, 0.225]) * 255) \
        + np.array([0.485, 0.456, 0.406]) * 255
    np.testing.assert_allclose(restored, resized, atol=1e-3)


def test_postprocess_upsampling_equals_torch_bilinear_half_pixel():
    logits = np.random.default_rng(0).standard_normal((21, 16, 16)).astype(np.float32)
    ours = postprocess_py.logits_to_class_map(logits, (64, 64))
    reference = F.interpolate(torch.from_numpy(logits)[None].double(), size=(64, 64), mode="bilinear",
                              align_corners=False)[0].argmax(0).numpy()
    assert np.mean(ours == reference) > 0.999  # float32 vs float64 may flip a rare tie


def test_postprocess_scores_perfect_logits_near_one(tmp_path, synthetic_voc):
    """Logits made from the labels themselves: the geometry (pad, resize) must line up."""
    dataset = VOCSegmentation.from_parent(synthetic_voc)
    out_hw = output_shapes((SIZE, SIZE))[0][1]
    geometry = {}
    for image_id in dataset.ids:
        label = dataset.read_label(image_id)
        box = preprocess_py.letterbox(label.shape, SIZE)
        geometry[image_id] = box.to_dict()
        canvas = postprocess_py.label_on_canvas(label, box)
        small = cv2.resize(canvas, (out_hw, out_hw), interpolation=cv2.INTER_NEAREST)
        one_hot = (np.arange(21)[:, None, None] == small[None]).astype(np.float32) * 10
        write_bin(tmp_path / "res" / f"{image_id}_0.bin", one_hot)
    (tmp_path / "meta.json").write_text(json.dumps({"size": SIZE, "images": geometry}))
    result = run_script("RefineNet", "RefineNet_postprocess.py", "--val-dir", synthetic_voc, "--result-dir",
                        tmp_path / "res", "--meta", tmp_path / "meta.json", "--save_path", tmp_path / "m.json")
    miou = json.loads((tmp_path / "m.json").read_text())["miou"]
    assert miou > 0.7, result.stdout
    assert result.stdout.strip().endswith(f"miou: {miou:.6f}")


def test_onnx_runtime_matches_pytorch_and_gives_the_same_miou(pipeline):
    work, printed = pipeline
    out_hw = output_shapes((SIZE, SIZE))[0][1]
    flipped = 0
    for path in sorted((work / "result" / "torch").glob("*.bin")):
        ref = read_bin(path, (21, out_hw, out_hw))
        got = read_bin(work / "result" / "ort" / path.name, (21, out_hw, out_hw))
        flipped += assert_classes_agree(ref, got)
    assert printed["ort"].startswith("miou: ")
    if flipped == 0:  # a near-tied position that flips moves the mIoU by a few pixels' worth
        assert printed["ort"] == printed["torch"]
    else:
        assert abs(float(printed["ort"].split()[1]) - float(printed["torch"].split()[1])) <= 1e-3


def test_truncated_output_bin_is_one_line_naming_it(tmp_path, pipeline, synthetic_voc):
    work, _ = pipeline
    broken = tmp_path / "broken"
    shutil.copytree(work / "result" / "ort", broken)
    victim = sorted(broken.glob("*.bin"))[1]
    victim.write_bytes(victim.read_bytes()[:100])
    result = run_script("RefineNet", "RefineNet_postprocess.py", "--val-dir", synthetic_voc, "--result-dir",
                        broken, "--size", SIZE, check=False)
    assert result.returncode == 2
    assert error_lines(result) == [f"error: {victim}: 100 bytes, expected {21 * 16 * 16 * 4} "
                                   f"(float32 (21, 16, 16))"]


def test_missing_outputs_are_counted_unless_allowed(tmp_path, pipeline, synthetic_voc):
    work, _ = pipeline
    partial = tmp_path / "partial"
    shutil.copytree(work / "result" / "ort", partial)
    sorted(partial.glob("*.bin"))[0].unlink()
    args = ("--val-dir", synthetic_voc, "--result-dir", partial, "--size", SIZE)
    refused = run_script("RefineNet", "RefineNet_postprocess.py", *args, check=False)
    assert refused.returncode == 2 and "outputs missing for 1 of 4 samples" in refused.stderr
    allowed = run_script("RefineNet", "RefineNet_postprocess.py", *args, "--allow-missing",
                         "--save_path", tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["images"] == 3 and allowed.returncode == 0
