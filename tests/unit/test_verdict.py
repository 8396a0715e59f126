"""The verdict of a summary row is computed from what was measured against stated tolerances:
it says `agree` for outputs within them and turns to `differs: ...` when they are made to differ."""
from __future__ import annotations

import json

import numpy as np
import pytest

from common import pack_summary
from common.eval.parity import compare_detection_folders
from common.files.bins import write_bin
from common.summary.verdict import TOLERANCES, detection_verdict, segmentation_verdict

FP32 = TOLERANCES["fp32"]


def test_segmentation_verdict_turns_on_each_measured_figure():
    assert segmentation_verdict(0.0, 0.0, 0, 1000, FP32) == "agree"
    assert segmentation_verdict(5e-5, 5e-5, 5, 100_000, FP32) == "agree"  # within both tolerances
    pixels = segmentation_verdict(0.0, 0.002, 200, 100_000, FP32)
    assert pixels.startswith("differs: 0.2 % of pixels of another class (200 of 100000)"), pixels
    metric = segmentation_verdict(-0.003, 0.0, 0, 100, FP32)
    assert metric == "differs: metric differs by -0.003 (tolerance 0.0001)"
    both = segmentation_verdict(0.01, 0.5, 1, 2, FP32)
    assert both.count(";") == 1
    # bf16 is held to looser, stated tolerances: the same 0.2 % is within them
    assert segmentation_verdict(0.0, 0.002, 200, 100_000, TOLERANCES["bf16"]) == "agree"


def _detections(rows: list[tuple[float, float, float, float, float, int]]) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.zeros((100, 5), np.float32)
    labels = np.full(100, -1, np.int32)
    for index, (*box, label) in enumerate(rows):
        boxes[index] = box
        labels[index] = label
    return boxes, labels


def _write_run(folder, images: dict[str, list]) -> None:
    for stem, rows in images.items():
        boxes, labels = _detections(rows)
        write_bin(folder / f"{stem}_0.bin", boxes)
        write_bin(folder / f"{stem}_1.bin", labels)
        write_bin(folder / f"{stem}_2.bin", np.zeros((100, 80, 2, 2), np.float32))


def test_detections_are_matched_one_to_one_and_an_extra_one_turns_the_verdict(tmp_path):
    reference = {"a": [(10, 10, 50, 50, 0.9, 3), (60, 60, 90, 90, 0.5, 7)], "b": [(5, 5, 30, 40, 0.8, 0)]}
    _write_run(tmp_path / "ref", reference)
    _write_run(tmp_path / "same", reference)
    found = compare_detection_folders(tmp_path / "ref", tmp_path / "same")
    assert (found["matched"], found["reference"], found["candidate"], found["images"]) == (3, 3, 3, 2)
    assert detection_verdict(0.0, found, FP32) == "agree"
    # one extra detection (score 0.197, as on the real COCO image) and one relabelled box
    changed = {"a": [(10, 10, 50, 50, 0.9, 3), (60, 60, 90, 90, 0.5, 8), (0, 0, 9, 9, 0.197, 1)],
               "b": [(5, 5, 30, 40, 0.8, 0)]}
    _write_run(tmp_path / "changed", changed)
    found = compare_detection_folders(tmp_path / "ref", tmp_path / "changed")
    assert (found["matched"], found["candidate"]) == (2, 4)
    verdict = detection_verdict(0.0, found, FP32)
    assert verdict.startswith("differs: 2 of 4 detections matched one to one (50 %"), verdict


def test_a_box_moved_beyond_the_iou_bound_is_not_a_match(tmp_path):
    _write_run(tmp_path / "ref", {"a": [(10, 10, 50, 50, 0.9, 3)]})
    _write_run(tmp_path / "moved", {"a": [(11, 10, 51, 50, 0.9, 3)]})  # IoU 0.95 < 0.99
    assert compare_detection_folders(tmp_path / "ref", tmp_path / "moved")["matched"] == 0
    _write_run(tmp_path / "rescored", {"a": [(10, 10, 50, 50, 0.9005, 3)]})  # score within 1e-3
    assert compare_detection_folders(tmp_path / "ref", tmp_path / "rescored")["matched"] == 1


def _work_folder(tmp_path, flip_fraction: float):
    """A RefineNet work folder as run_pack leaves it: both runs' outputs, metrics, summaries."""
    work = tmp_path / f"work_{flip_fraction}"
    rng = np.random.default_rng(0)
    for stem in ("2007_000000", "2007_000001"):
        logits = rng.standard_normal((21, 24, 24)).astype(np.float32)
        write_bin(work / "result" / "pytorch" / f"{stem}_0.bin", logits)
        changed = logits.copy()
        flat = changed.reshape(21, -1)
        positions = int(flip_fraction * flat.shape[1])
        flat[:, :positions] = flat[::-1, :positions]  # another class wins at those positions
        write_bin(work / "result" / "onnxruntime" / f"{stem}_0.bin", changed)
    for name in ("pytorch", "onnxruntime"):
        (work / f"metric_{name}.json").write_text(json.dumps({"miou": 0.25}))
        (work / "result" / f"{name}_summary.json").write_text(json.dumps(
            {"samples": 2, "throughput": 1.0, "backend": name, "precision": "fp32"}))
    return work


@pytest.mark.parametrize("flip_fraction, expected", [(0.0, "agree"), (0.25, "differs: ")])
def test_pack_summary_row_verdict_follows_the_outputs(tmp_path, flip_fraction, expected, capsys):
    work = _work_folder(tmp_path, flip_fraction)
    weights = tmp_path / "RefineNet_910.pth.tar"
    weights.write_bytes(b"not really a checkpoint")
    args = pack_summary.parse_args(["--pack", "RefineNet", "--work", str(work), "--weights", str(weights)])
    assert pack_summary.main(args) == 0
    row = json.loads((work / "summary_row.json").read_text())
    assert row["verdict"].startswith(expected), row["verdict"]
    assert row["tolerance"] == FP32.to_dict() and row["precision"] == "fp32"
    # the real file is named with the start of its sha256 (b"not really a checkpoint")
    assert row["weights"] == "RefineNet_910.pth.tar (sha256 5c0cd68cfc62)"
    assert f"RefineNet: {row['verdict']}" in capsys.readouterr().out


def test_demo_weights_are_said_to_be_demo(tmp_path):
    work = _work_folder(tmp_path, 0.0)
    args = pack_summary.parse_args(["--pack", "RefineNet", "--work", str(work), "--weights", "x.pth.tar",
                                    "--demo-weights"])
    pack_summary.main(args)
    assert json.loads((work / "summary_row.json").read_text())["weights"].startswith("demo (random values")


def test_fp16_phrase_claims_no_overflow_only_where_the_tensors_were_checked():
    outputs = [{"name": "out", "cosine": 0.9999, "class_changed_beyond_ties": 0.0, "nonfinite": 0}]
    checked = {"emulated": {"outputs": outputs, "meets_tolerance": True}, "tensors_summary": {"fp16_overflow": []}}
    assert "no overflow" in pack_summary.fp16_summary(checked)
    overflowing = {**checked, "tensors_summary": {"fp16_overflow": [{"tensor": "a"}], "first_departing": {"node": "Add_7"}}}
    assert "overflow in 1 tensor(s)" in pack_summary.fp16_summary(overflowing)
    assert "first departs at Add_7" in pack_summary.fp16_summary(overflowing)
    outputs_only = {"emulated": {"outputs": outputs, "meets_tolerance": True}}
    phrase = pack_summary.fp16_summary(outputs_only)
    assert "no overflow" not in phrase and "per-tensor ranges not computed" in phrase and "finite outputs" in phrase
    infinite = {"emulated": {"outputs": [{**outputs[0], "nonfinite": 3}], "meets_tolerance": False}}
    assert "beyond tolerance" in pack_summary.fp16_summary(infinite)
    assert "3 inf/NaN output values" in pack_summary.fp16_summary(infinite)


def test_fp16_phrase_counts_pixels_for_logits_and_values_for_an_integer_output():
    logits = {"name": "out", "cosine": 0.99, "class_changed": 0.02, "class_changed_beyond_ties": 0.01}
    labels = {"name": "labels", "integer": True, "class_changed": 0.09, "class_changed_beyond_ties": 0.09}
    phrase = pack_summary.fp16_summary({"emulated": {"outputs": [logits], "meets_tolerance": False}})
    assert "1 % of pixels of another class beyond ties" in phrase and "values differ" not in phrase
    phrase = pack_summary.fp16_summary({"emulated": {"outputs": [{**logits, "cosine": 0.95}, labels],
                                                     "meets_tolerance": False}})
    assert "9 % of the 'labels' values differ" in phrase and "1 % of pixels" in phrase
    same = pack_summary.fp16_summary({"emulated": {"outputs": [{**labels, "class_changed": 0.0}],
                                                   "meets_tolerance": True}})
    assert "pixels" not in same and "differ" not in same


def test_shipped_keep_list_phrase_follows_its_own_report():
    def report(meets, changed):
        outputs = [{"name": "results", "cosine": 0.9998, "class_changed_beyond_ties": changed}]
        return {"emulated": {"outputs": outputs, "meets_tolerance": meets}, "kept_nodes": ["a", "b", "c"]}
    fixed = pack_summary.keep_list_summary(report(True, 0.00002), "keep.cfg")
    assert fixed.startswith("with the shipped keep.cfg (3 nodes in float32): within tolerance")
    assert "0.002 % of pixels" in fixed
    assert "still beyond tolerance" in pack_summary.keep_list_summary(report(False, 0.004), "keep.cfg")
