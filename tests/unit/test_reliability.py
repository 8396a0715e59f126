"""Issue 7: bad input gives one line and exit 2, interrupted runs lose nothing, no metric from
an incomplete set, no code run from a checkpoint. Covers common/ and the RefineNet pack.

Scripts are mostly driven in-process through common.cli.run_script (the same path as the
command line minus sys.exit) to keep this file fast; a few run as real subprocesses.
"""
from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from common import cli
from common.files.bins import list_bins, write_bin
from common.data.voc import VOCSegmentation
from common.weights.manifest import manifest_shapes
from common.files.atomic import atomic_path, is_temp_name
from common.pipeline.packs import pack_module
from common.eval.parity import compare_output_folders
from common.files.outputs import match_outputs
from helpers import REPO_ROOT, voc_root, error_lines, run_script, expect_one_line, run_cli

SIZE = 64
OUT_HW = 16  # RefineNet output side for a 64 input
preprocess_py = pack_module("RefineNet", "RefineNet_preprocess")
postprocess_py = pack_module("RefineNet", "RefineNet_postprocess")
pth2onnx_py = pack_module("RefineNet", "RefineNet_pth2onnx")
infer_py = __import__("common.infer", fromlist=["main"])
torch_infer_py = __import__("common.torch_infer", fromlist=["main"])
pack_summary_py = __import__("common.pack_summary", fromlist=["main"])
collect_summary_py = __import__("common.collect_summary", fromlist=["main"])
info_cli_py = __import__("common.info_cli", fromlist=["main"])


def ids_of(parent: Path) -> list[str]:
    return VOCSegmentation.from_parent(parent).ids


def fake_results(folder: Path, ids, seed: int = 0) -> Path:
    """RefineNet-shaped logits (21 x 16 x 16) for each id, as common.infer would write them."""
    rng = np.random.default_rng(seed)
    for image_id in ids:
        write_bin(folder / f"{image_id}_0.bin", rng.standard_normal((21, OUT_HW, OUT_HW)).astype(np.float32))
    return folder


def postprocess(capsys, parent: Path, result_dir: Path, *extra):
    return run_cli(postprocess_py, "--val-dir", parent, "--result-dir", result_dir, "--size", SIZE, *extra,
                   capsys=capsys)


# ---- dataset problems --------------------------------------------------------------------

def test_missing_voc_folder(tmp_path, capsys):
    code, lines = run_cli(preprocess_py, "--root-dir", tmp_path / "nope" / "VOC2012", "--bin-dir",
                          tmp_path / "bins", capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/nope/VOC2012: VOC2012 folder not found")
    assert not (tmp_path / "bins").exists()


def test_missing_split_list(voc, tmp_path, capsys):
    (voc_root(voc) / "ImageSets" / "Segmentation" / "val.txt").unlink()
    code, lines = run_cli(preprocess_py, "--root-dir", voc_root(voc), "--bin-dir", tmp_path / "b", capsys=capsys)
    expect_one_line(code, lines, "ImageSets/Segmentation/val.txt: id list not found")


def test_missing_image_is_counted_before_any_bin(voc, tmp_path, capsys):
    victim = ids_of(voc)[2]
    (voc_root(voc) / "JPEGImages" / f"{victim}.jpg").unlink()
    code, lines = run_cli(preprocess_py, "--root-dir", voc_root(voc), "--bin-dir", tmp_path / "b",
                          "--size", SIZE, capsys=capsys)
    expect_one_line(code, lines, f"JPEGImages/{victim}.jpg: image missing (1 of 4 ids, first: {victim})")
    assert not (tmp_path / "b").exists()


def test_images_without_labels_stop_the_postprocess(voc, tmp_path, capsys):
    ids = ids_of(voc)
    for image_id in ids[1:3]:
        (voc_root(voc) / "SegmentationClass" / f"{image_id}.png").unlink()
    code, lines = postprocess(capsys, voc, fake_results(tmp_path / "res", ids))
    expect_one_line(code, lines, f"SegmentationClass/{ids[1]}.png: label missing (2 of 4 ids, "
                                 f"first: {ids[1]}, {ids[2]})")


def test_unreadable_image_stops_preprocess_before_the_first_bin(voc, tmp_path, capsys):
    victim = ids_of(voc)[-1]
    (voc_root(voc) / "JPEGImages" / f"{victim}.jpg").write_bytes(b"<html>not found</html>")
    code, lines = run_cli(preprocess_py, "--root-dir", voc_root(voc), "--bin-dir", tmp_path / "b",
                          "--size", SIZE, capsys=capsys)
    expect_one_line(code, lines, f"{victim}.jpg: unreadable image (not an image file)")
    assert not (tmp_path / "b").exists()  # the last image, yet nothing was written


def test_image_cut_short_is_named_when_decoded(voc, tmp_path, capsys):
    victim = ids_of(voc)[1]
    path = voc_root(voc) / "JPEGImages" / f"{victim}.jpg"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])  # header intact, pixel data cut
    code, lines = run_cli(preprocess_py, "--root-dir", voc_root(voc), "--bin-dir", tmp_path / "b",
                          "--size", SIZE, capsys=capsys)
    expect_one_line(code, lines, f"{path}: unreadable image (image file is truncated")
    assert not (tmp_path / "b" / f"{victim}.bin").exists()


def test_rgb_label_is_refused(voc, tmp_path, capsys):
    ids = ids_of(voc)
    label = voc_root(voc) / "SegmentationClass" / f"{ids[0]}.png"
    Image.open(label).convert("RGB").save(label)
    code, lines = postprocess(capsys, voc, fake_results(tmp_path / "res", ids))
    expect_one_line(code, lines, f"{label}: label has mode RGB, expected L or P")


def test_bin_dir_that_is_a_file(voc, tmp_path, capsys):
    (tmp_path / "bins").write_text("x")
    code, lines = run_cli(preprocess_py, "--root-dir", voc_root(voc), "--bin-dir", tmp_path / "bins",
                          capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/bins: exists and is not a folder")


# ---- bins and ONNX input shape -----------------------------------------------------------

class SmallNet(nn.Module):
    """A few convolutions: slow enough per sample for the kill test, small enough to export fast."""

    def __init__(self, channels: int = 32, depth: int = 4):
        super().__init__()
        layers = [nn.Conv2d(3, channels, 3, padding=1)]
        for _ in range(depth - 1):
            layers += [nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1)]
        layers += [nn.ReLU(), nn.Conv2d(channels, 21, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def export_small(path: Path, side: int) -> Path:
    torch.manual_seed(0)
    torch.onnx.export(SmallNet().eval(), (torch.randn(1, 3, side, side),), str(path), input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "b"}, "output": {0: "b"}},
                      opset_version=11, dynamo=False)
    return path


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> Path:
    return export_small(tmp_path_factory.mktemp("small") / "small32.onnx", 32)


def test_onnx_input_shape_that_does_not_match_the_bins(voc, tmp_path, small_onnx, capsys):
    # Bins preprocessed at 48 given to a model exported at 32: the classic size mix-up.
    assert run_cli(preprocess_py, "--root-dir", voc_root(voc), "--bin-dir", tmp_path / "b48", "--size", 48,
                   capsys=capsys)[0] == 0
    first = list_bins(tmp_path / "b48")[0]
    code, lines = run_cli(infer_py, "--model", small_onnx, "--input", tmp_path / "b48", "--output",
                          tmp_path / "out", "--output_dirname", "r", capsys=capsys)
    expect_one_line(code, lines, f"{first}: {3 * 48 * 48 * 4} bytes, expected {3 * 32 * 32 * 4} for input "
                                 "'input' of small32.onnx (float32 (3, 32, 32)): the file fits float32 "
                                 "(3, 48, 48), so the model input shape does not match the bins")
    assert not list((tmp_path / "out").rglob("*.bin"))


def test_model_that_is_not_onnx(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07garbage")
    write_bin(tmp_path / "in" / "a.bin", np.zeros(4, np.float32))
    code, lines = run_cli(infer_py, "--model", tmp_path / "m.onnx", "--input", tmp_path / "in", "--output",
                          tmp_path / "o", capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/m.onnx: ONNX Runtime cannot load the model")


def test_missing_input_folder_and_output_in_the_way(tmp_path, small_onnx, capsys):
    code, lines = run_cli(infer_py, "--model", small_onnx, "--input", tmp_path / "absent", "--output",
                          tmp_path / "o", capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/absent: input folder or file not found")
    write_bin(tmp_path / "in" / "a.bin", np.zeros((3, 32, 32), np.float32))
    (tmp_path / "o").write_text("a file where the result folder goes")
    code, lines = run_cli(infer_py, "--model", small_onnx, "--input", tmp_path / "in", "--output",
                          tmp_path / "o", "--output_dirname", "r", capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/o/r: cannot create the result folder")


# ---- result folders ----------------------------------------------------------------------

def test_missing_outputs_name_count_and_first_stems(voc, tmp_path, capsys):
    ids = ids_of(voc)
    results = fake_results(tmp_path / "res", ids[:1])
    code, lines = postprocess(capsys, voc, results)
    expect_one_line(code, lines, f"{results}: outputs missing for 3 of 4 samples (first: {', '.join(ids[1:4])}); "
                                 "pass --allow-missing to score the rest")
    assert not (tmp_path / "res_miou.json").exists()


def test_extra_outputs_are_refused(voc, tmp_path, capsys):
    results = fake_results(tmp_path / "res", ids_of(voc) + ["stray_image"])
    code, lines = postprocess(capsys, voc, results)
    expect_one_line(code, lines, f"{results}: 1 output file(s) match no sample of the list "
                                 "(first: stray_image_0.bin): wrong result folder or list?")


def test_allow_missing_scores_the_rest_and_says_how_many(voc, tmp_path, capsys):
    ids = ids_of(voc)
    results = fake_results(tmp_path / "res", ids[:3])
    code, lines = postprocess(capsys, voc, results, "--allow-missing", "--save_path", tmp_path / "m.json")
    assert code == 0
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["images"] == 3 and saved["images_left_out"] == 1
    assert lines == [f"[WARNING] 1 of 4 images left out (no outputs, --allow-missing): first {ids[3]}",
                     f"[WARNING] {results}: no preprocess_meta.json found; the geometry was recomputed for "
                     f"--size {SIZE} from each label's size"]


def test_nan_in_outputs_is_named(voc, tmp_path, capsys):
    ids = ids_of(voc)
    results = fake_results(tmp_path / "res", ids)
    poisoned = np.fromfile(results / f"{ids[2]}_0.bin", np.float32)
    poisoned[7] = np.nan
    write_bin(results / f"{ids[2]}_0.bin", poisoned)
    code, lines = postprocess(capsys, voc, results)
    expect_one_line(code, lines, f"{results}/{ids[2]}_0.bin: output holds NaN or Inf values")


def test_output_bins_of_another_size_name_the_file(voc, tmp_path, capsys):
    ids = ids_of(voc)
    results = fake_results(tmp_path / "res", ids)
    code, lines = run_cli(postprocess_py, "--val-dir", voc, "--result-dir", results, "--size", 96, capsys=capsys)
    expect_one_line(code, lines, f"{results}/{ids[0]}_0.bin: {21 * 16 * 16 * 4} bytes, expected "
                                 f"{21 * 24 * 24 * 4} (float32 (21, 24, 24))")


def test_corrupt_preprocess_metadata(voc, tmp_path, capsys):
    ids = ids_of(voc)
    results = fake_results(tmp_path / "res", ids)
    meta = tmp_path / "meta.json"
    meta.write_text('{"size": 64, "images": {"' + ids[0] + '": {"original_hw": [60, ')  # cut short
    code, lines = postprocess(capsys, voc, results, "--meta", meta)
    expect_one_line(code, lines, f"{meta}: not preprocess metadata written by RefineNet_preprocess.py")
    meta.write_text(json.dumps({"size": 64, "images": {ids[0]: {"original_hw": "ab"}}}))
    code, lines = postprocess(capsys, voc, results, "--meta", meta)
    expect_one_line(code, lines, f"{meta}: the geometry of '{ids[0]}' is not a letterbox record")


def test_truncated_inference_summary_is_only_a_missing_hint(voc, tmp_path, capsys):
    ids = ids_of(voc)
    results = fake_results(tmp_path / "res", ids)
    Path(str(results) + "_summary.json").write_text('{"filesinfo": {"0": {"infiles": ["/x/')
    code, lines = postprocess(capsys, voc, results, "--save_path", tmp_path / "m.json")
    assert code == 0, lines
    assert json.loads((tmp_path / "m.json").read_text())["images"] == 4


# ---- checkpoints -------------------------------------------------------------------------

def names_only_checkpoint(model_name: str, prefix: str = "") -> "OrderedDict[str, torch.Tensor]":
    """Another model's tensor names with 1-element tensors: identifies like the real file."""
    return OrderedDict((prefix + name, torch.zeros(1)) for name in manifest_shapes(model_name))


@pytest.mark.parametrize("other, prefix, container_key, file_name", [
    ("Wseg", "", None, "res38_cls.pth"),
    ("3D_HRNet", "model.", None, "hrnet_ocr_cs.pth"),
    ("PointRend", "", "model", "model_final_cf6ac1.pkl"),
])
def test_checkpoint_of_another_model_is_one_short_line(tmp_path, capsys, other, prefix, container_key, file_name):
    state = names_only_checkpoint(other, prefix)
    path = tmp_path / file_name
    if path.suffix == ".pkl":
        with open(path, "wb") as handle:
            pickle.dump({container_key: {k: v.numpy() for k, v in state.items()}, "__author__": "x"}, handle,
                        protocol=2)
    else:
        torch.save(state, path)
    code, lines = run_cli(pth2onnx_py, "--input-file", path, "--output-file", tmp_path / "x.onnx", "--size", SIZE,
                          capsys=capsys)
    line = expect_one_line(code, lines, f"{path}: this is a {other} checkpoint (by its tensor names), "
                                        "not a RefineNet one: only 0 of 712 RefineNet101 tensors found by name")
    assert len(line) < 250
    assert not (tmp_path / "x.onnx").exists()


def test_mmdet_container_given_to_refinenet_names_the_model(tmp_path, capsys):
    path = tmp_path / "mask_rcnn.pth"
    torch.save({"meta": {"epoch": 12}, "state_dict": names_only_checkpoint("MaskRCNN_mmdet")}, path)
    code, lines = run_cli(pth2onnx_py, "--input-file", path, "--output-file", tmp_path / "x.onnx", capsys=capsys)
    expect_one_line(code, lines, f"{path}: no weights found: expected 'model'; top-level keys are ['meta', "
                                 "'state_dict']; the tensors under 'state_dict' are those of a MaskRCNN_mmdet checkpoint")


def test_torch_infer_with_another_models_checkpoint(tmp_path, small_onnx, capsys):
    """The PyTorch reference run loads through the pack named in the ONNX metadata."""
    import onnx
    from common.runtime.graph import META_OPTIONS, META_PACK, set_metadata
    tagged = onnx.load(str(small_onnx))
    set_metadata(tagged, {META_PACK: "RefineNet", META_OPTIONS: "{}"})
    onnx.save(tagged, str(tmp_path / "tagged.onnx"))
    torch.save(names_only_checkpoint("Wseg"), tmp_path / "res38.pth")
    write_bin(tmp_path / "in" / "a.bin", np.zeros((3, 32, 32), np.float32))
    code, lines = run_cli(torch_infer_py, "--model", tmp_path / "tagged.onnx", "--checkpoint", tmp_path / "res38.pth",
                          "--input", tmp_path / "in", "--output", tmp_path / "o", capsys=capsys)
    expect_one_line(code, lines, "res38.pth: this is a Wseg checkpoint")


class RunsCode:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("file_name, writer", [
    ("RefineNet_910.pth.tar", "zip"), ("weights.pth", "legacy"), ("model_final.pkl", "pickle"),
    ("disguised.pth.tar", "pickle"),
])
def test_checkpoint_that_runs_code_is_refused(tmp_path, capsys, file_name, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / file_name
    if writer == "pickle":  # detectron2 style: numpy arrays in a plain pickle
        path.write_bytes(pickle.dumps({"model": {"w": np.zeros(2)}, "payload": RunsCode(marker)}, protocol=2))
    else:
        torch.save({"model": OrderedDict(w=torch.zeros(2)), "payload": RunsCode(marker)}, path,
                   _use_new_zipfile_serialization=(writer == "zip"))
    code, lines = run_cli(pth2onnx_py, "--input-file", path, "--output-file", tmp_path / "x.onnx", capsys=capsys)
    expect_one_line(code, lines, f"{path}: refused to load: unpickling it would call posix.system (code, not "
                                 "weights); only plain weight containers are read")
    assert not marker.exists()


def test_evil_checkpoint_through_the_real_command_line(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "RefineNet_910.pth.tar"
    torch.save({"model": {}, "payload": RunsCode(marker)}, path)
    result = run_script("RefineNet", "RefineNet_pth2onnx.py", "--input-file", path, "--output-file",
                        tmp_path / "x.onnx", check=False)
    assert result.returncode == 2 and len(error_lines(result)) == 1
    assert "refused to load" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_legacy_non_zip_torch_file_is_read(tmp_path, capsys):
    """Pre-1.6 torch.save files are not zips; they must still load (here: shapes are checked)."""
    from common.weights.checkpoint import read_checkpoint
    state = OrderedDict(conv=torch.arange(6.0).reshape(2, 3))
    torch.save({"model": state, "epoch": 3}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert not (tmp_path / "old.pth").read_bytes().startswith(b"PK")
    loaded = read_checkpoint(tmp_path / "old.pth")
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["conv"], state["conv"])
    # Through the pack: RefineNet's names with wrong shapes get a shape report, so it was read.
    legacy = {"model": names_only_checkpoint("RefineNet"), "epoch": 0}
    torch.save(legacy, tmp_path / "RefineNet_910.pth.tar", _use_new_zipfile_serialization=False)
    code, lines = run_cli(pth2onnx_py, "--input-file", tmp_path / "RefineNet_910.pth.tar", "--output-file",
                          tmp_path / "x.onnx", capsys=capsys)
    expect_one_line(code, lines, "checkpoint does not match RefineNet101: 712 wrong shape (conv1.weight [1] vs "
                                 "[64, 3, 7, 7]")


@pytest.mark.parametrize("content, fragment", [
    (b"PK\x03\x04" + b"\0" * 64, "not a readable torch checkpoint"),
    (b"just text", "not a readable checkpoint: neither a torch file nor a weights pickle"),
    (b"", "checkpoint file is empty"),
])
def test_damaged_checkpoint_is_not_called_an_attack(tmp_path, capsys, content, fragment):
    (tmp_path / "c.pth.tar").write_bytes(content)
    code, lines = run_cli(pth2onnx_py, "--input-file", tmp_path / "c.pth.tar", "--output-file", tmp_path / "x.onnx",
                          capsys=capsys)
    assert "refused" not in expect_one_line(code, lines, f"{tmp_path}/c.pth.tar: {fragment}")


def test_output_file_that_is_a_folder_fails_before_loading(tmp_path, capsys):
    (tmp_path / "out.onnx").mkdir()
    code, lines = run_cli(pth2onnx_py, "--input-file", tmp_path / "absent.pth.tar", "--output-file",
                          tmp_path / "out.onnx", capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/out.onnx: is a folder, expected a file name")


# ---- summaries ---------------------------------------------------------------------------

def test_pack_summary_with_a_cut_metric_file(tmp_path, capsys):
    (tmp_path / "metric_pytorch.json").write_text('{"miou": 0.5')
    code, lines = run_cli(pack_summary_py, "--pack", "RefineNet", "--work", tmp_path, capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/metric_pytorch.json: not valid JSON (cut short by an interrupted run?)")
    (tmp_path / "metric_pytorch.json").write_text('{"miou": "high"}')
    code, lines = run_cli(pack_summary_py, "--pack", "RefineNet", "--work", tmp_path, capsys=capsys)
    expect_one_line(code, lines, "'miou' is 'high', not a number")


def test_collect_summary_survives_a_cut_row(tmp_path, capsys):
    (tmp_path / "RefineNet").mkdir()
    (tmp_path / "RefineNet" / "summary_row.json").write_text('{"pack": "RefineNet", "status": "o')
    code = cli.run_script(collect_summary_py.main, collect_summary_py.parse_args, [str(tmp_path), "--packs", "RefineNet"])
    assert code == 1
    rows = json.loads((tmp_path / "summary.json").read_text())["packs"]
    assert rows == [{"pack": "RefineNet", "status": f"unreadable {tmp_path}/RefineNet/summary_row.json"}]


def test_get_info_jpg_mode_unreadable_image(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (5, 3)).save(tmp_path / "imgs" / "a.jpg")
    (tmp_path / "imgs" / "b.jpg").write_bytes(b"nope")
    code, lines = run_cli(info_cli_py, "jpg", tmp_path / "imgs", tmp_path / "d.info", capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/imgs/b.jpg: unreadable image (not an image file)")
    (tmp_path / "imgs" / "b.jpg").unlink()
    assert run_cli(info_cli_py, "jpg", tmp_path / "imgs", tmp_path / "d.info", capsys=capsys)[0] == 0
    assert (tmp_path / "d.info").read_text() == f"0 {tmp_path}/imgs/a.jpg 5 3\n"


# ---- interrupted runs --------------------------------------------------------------------

# Folders whose every file write must go through atomic_path (add each pack as it is checked).
ATOMIC_WRITE_FOLDERS = ("common", "RefineNet", "3D_HRNet", "PointRend", "Wseg", "MaskRCNN_mmdet")


def test_every_writer_goes_through_a_temporary_name():
    """Static check: each call that writes a file sits inside `with atomic_path(...)`."""
    offenders = []
    files = [path for folder in ATOMIC_WRITE_FOLDERS for path in sorted((REPO_ROOT / folder).glob("*.py"))]
    for path in files:
        offenders += [f"{path.relative_to(REPO_ROOT)}:{line}" for line in unprotected_writes(path.read_text())]
    assert not offenders, offenders
    assert len(files) > 10


def test_the_writer_check_finds_a_direct_write():
    source = ("from pathlib import Path\n"
              "Path('a').write_text('x')\n"
              "with atomic_path('b') as tmp:\n"
              "    tmp.write_bytes(b'y')\n"
              "    np.save(tmp, 1)\n"
              "open('c', 'w').close()\n"
              "open('d', 'rb').close()\n")
    assert unprotected_writes(source) == [2, 6]


WRITER_CALLS = {"write_text", "write_bytes", "tofile", "save", "savetxt", "imwrite", "dump"}


def unprotected_writes(source: str) -> list[int]:
    """Line numbers of file-writing calls outside any `with atomic_path(...)` block."""
    tree = ast.parse(source)
    protected = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any(_calls(item.context_expr, "atomic_path") for item in node.items):
            protected.update(id(inner) for inner in ast.walk(node))
    return sorted(node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and id(node) not in protected and _is_write(node, WRITER_CALLS))


def _calls(node, name: str) -> bool:
    return isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name


def _is_write(call: ast.Call, writers: set[str]) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in writers:
        return True
    if isinstance(func, ast.Name) and func.id == "open" and len(call.args) > 1:
        mode = call.args[1]
        return isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax")
    return False


def test_atomic_path_leaves_nothing_on_failure_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "r_0.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            assert is_temp_name(tmp.name) and tmp.name.startswith(".") and tmp.name.endswith(".tmp.bin")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["r_0.bin"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_temp_files_left_by_a_kill_are_never_results(tmp_path):
    """What SIGKILL during a write leaves: a hidden temp file that no later step reads."""
    write_bin(tmp_path / "a_0.bin", np.zeros(4, np.float32))
    (tmp_path / ".b_0.bin.k3j2_x.tmp.bin").write_bytes(b"\0" * 8)  # b's output, half written
    assert [p.name for p in list_bins(tmp_path)] == ["a_0.bin"]
    complete, missing = match_outputs(tmp_path, ["a", "b"], allow_missing=True)
    assert (complete, missing) == (["a"], ["b"])
    # pathlib's glob does match hidden names: readers must use list_bins (pack_summary does).
    assert len(list(tmp_path.glob("*.bin"))) == 2
    shutil.copytree(tmp_path, tmp_path.parent / "reference", ignore=shutil.ignore_patterns(".*"))
    difference = compare_output_folders(tmp_path.parent / "reference", tmp_path, ["float32"])
    assert difference.count == 1 and difference.max_abs == 0


def _small_inputs(folder: Path, count: int) -> None:
    rng = np.random.default_rng(5)
    for index in range(count):
        write_bin(folder / f"img{index}.bin", rng.standard_normal((3, 32, 32)).astype(np.float32))


def _infer_command(model: Path, inputs: Path, output: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "common.infer", "--model", str(model), "--input", str(inputs), "--output",
            str(output), "--output_dirname", "run", "--threads", "1", *extra]


def test_kill_and_resume_gives_the_same_files(tmp_path, small_onnx):
    count = 60
    _small_inputs(tmp_path / "in", count)
    subprocess.run(_infer_command(small_onnx, tmp_path / "in", tmp_path / "full"), cwd=REPO_ROOT, check=True,
                   capture_output=True)
    part = tmp_path / "part" / "run"
    # --loop slows each sample down so that the kill lands mid-run.
    process = subprocess.Popen(_infer_command(small_onnx, tmp_path / "in", tmp_path / "part", "--loop", "20"),
                               cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if part.is_dir() and len(list(part.glob("*_0.bin"))) >= 5:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    done_at_kill = len(list(part.glob("*_0.bin")))
    assert 5 <= done_at_kill < count
    assert not (tmp_path / "part" / "run_summary.json").exists()
    (part / f".img{count - 1}_0.bin.zz9_x.tmp.bin").write_bytes(b"\0" * 10)  # as if killed mid-write

    resumed = subprocess.run(_infer_command(small_onnx, tmp_path / "in", tmp_path / "part", "--resume"),
                             cwd=REPO_ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "part" / "run_summary.json").read_text())
    assert summary["samples"] == count and summary["samples_skipped_by_resume"] >= done_at_kill
    full = tmp_path / "full" / "run"
    assert sorted(p.name for p in part.iterdir()) == sorted(p.name for p in full.iterdir())
    for path in full.iterdir():
        assert path.read_bytes() == (part / path.name).read_bytes(), path.name


def test_preprocess_resume_redoes_only_what_is_not_finished(voc, tmp_path, capsys):
    args = ("--root-dir", voc_root(voc), "--size", SIZE)
    assert run_cli(preprocess_py, *args, "--bin-dir", tmp_path / "full", capsys=capsys)[0] == 0
    assert run_cli(preprocess_py, *args, "--bin-dir", tmp_path / "part", capsys=capsys)[0] == 0
    ids = ids_of(voc)
    part = tmp_path / "part"
    (part / f"{ids[0]}.bin").unlink()  # never written
    write_bin(part / f"{ids[1]}.bin", np.zeros((3, 32, 32), np.float32))  # left by a run with --size 32
    (part / f".{ids[2]}.bin.ab12_cd.tmp.bin").write_bytes(b"\0" * 5)  # killed mid-write
    (part / "preprocess_meta.json").unlink()  # written last: absent after a kill
    kept = part / f"{ids[3]}.bin"
    os.utime(kept, ns=(1, 1))
    assert run_cli(preprocess_py, *args, "--bin-dir", part, "--resume", capsys=capsys)[0] == 0
    assert kept.stat().st_mtime_ns == 1  # finished bin kept, not rewritten
    assert sorted(p.name for p in part.iterdir()) == sorted(p.name for p in (tmp_path / "full").iterdir())
    for path in (tmp_path / "full").iterdir():
        assert path.read_bytes() == (part / path.name).read_bytes(), path.name


def test_bins_of_another_dtype_are_called_so(tmp_path, small_onnx, capsys):
    write_bin(tmp_path / "in" / "a.bin", np.zeros((3, 32, 32), np.float64))
    code, lines = run_cli(infer_py, "--model", small_onnx, "--input", tmp_path / "in", "--output", tmp_path / "o",
                          capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/in/a.bin: 24576 bytes, expected 12288 for input 'input' of "
                                 "small32.onnx (float32 (3, 32, 32)): the file holds 3072 values of 8 byte(s) "
                                 "each, the model wants float32: bins written with another dtype")


def test_atc_checks_the_model_and_its_input_names(tmp_path, small_onnx, capsys):
    atc_py = __import__("common.atc", fromlist=["main"])
    code, lines = run_cli(atc_py, "--model", tmp_path / "absent.onnx", "--output", tmp_path / "m",
                          "--input_shape", "input:1,3,32,32", capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/absent.onnx: ONNX model not found")
    code, lines = run_cli(atc_py, "--model", small_onnx, "--output", tmp_path / "m", "--input_shape",
                          "image:1,3,32,32", capsys=capsys)
    expect_one_line(code, lines, "--input_shape names 'image', the model's inputs are input")
    code, lines = run_cli(atc_py, "--model", small_onnx, "--output", tmp_path / "m", "--input_shape",
                          "input:1,3,500,500", capsys=capsys)
    expect_one_line(code, lines, "--input_shape gives 'input' 1,3,500,500, the model's input is ?,3,32,32")


def test_preprocess_killed_and_resumed_gives_the_same_files(tmp_path):
    from common.data.synth.voc import write_synthetic_voc
    count = 30
    voc_dir = write_synthetic_voc(tmp_path / "data", count=count, seed=4)
    command = [sys.executable, "RefineNet_preprocess.py", "--root-dir", str(voc_dir), "--size", "320", "--bin-dir"]
    cwd = REPO_ROOT / "RefineNet"
    subprocess.run(command + [str(tmp_path / "full")], cwd=cwd, check=True, capture_output=True)
    part = tmp_path / "part"
    process = subprocess.Popen(command + [str(part)], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if part.is_dir() and len(list_bins_or_none(part)) >= 3:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    done_at_kill = len(list_bins_or_none(part))
    assert 3 <= done_at_kill < count and not (part / "preprocess_meta.json").exists()
    resumed = subprocess.run(command + [str(part), "--resume"], cwd=cwd, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    full = tmp_path / "full"
    assert sorted(p.name for p in part.iterdir()) == sorted(p.name for p in full.iterdir())
    for path in full.iterdir():
        assert path.read_bytes() == (part / path.name).read_bytes(), path.name


def list_bins_or_none(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.suffix == ".bin" and not p.name.startswith(".")]
