"""MaskRCNN_mmdet preprocess geometry and postprocess scoring, checked without running the model.

The postprocess test writes output bins that encode the ground truth (boxes mapped into the
canvas with the preprocess geometry, masks cropped to 28x28): boxes must come back onto the
ground truth (bbox AP 1), crowd regions must be ignored rather than counted as false
positives, and an image without annotations and an all-padding output must be handled.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import REPO_ROOT
from common.files.bins import write_bin
from common.cli import UserError
from common.data.coco import COCO_CATEGORY_IDS, COCO_CATEGORY_TO_LABEL, CocoInstances
from common.data.geometry import Letterbox
from common.pipeline.packs import pack_module
from common.data.synth.coco import write_synthetic_coco

preprocess = pack_module("MaskRCNN_mmdet", "mmdet_preprocess")
postprocess = pack_module("MaskRCNN_mmdet", "mmdet_postprocess")
get_info = pack_module("MaskRCNN_mmdet", "get_info")

CANVAS_HW = (128, 160)


# ---- dataset and preprocess facts ------------------------------------------------------------

def test_coco_label_mapping_is_the_mmdet_order():
    assert COCO_CATEGORY_IDS[0] == 1 and COCO_CATEGORY_IDS[11] == 13 and COCO_CATEGORY_IDS[79] == 90
    assert COCO_CATEGORY_TO_LABEL[90] == 79
    assert len(COCO_CATEGORY_TO_LABEL) == 80 and 12 not in COCO_CATEGORY_TO_LABEL


def test_synthetic_coco_has_polygons_rle_crowd_and_an_empty_image(tmp_path):
    write_synthetic_coco(tmp_path, count=4, seed=1)
    dataset = CocoInstances(tmp_path)
    dataset.check_files()
    anns = dataset.coco.dataset["annotations"]
    assert any(isinstance(a["segmentation"], list) for a in anns)
    assert any(isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], str) for a in anns)
    assert any(a["iscrowd"] == 1 and isinstance(a["segmentation"]["counts"], list) for a in anns)
    assert len(dataset.coco.getAnnIds(imgIds=[dataset.image_ids[-1]])) == 0
    assert all(a["category_id"] in COCO_CATEGORY_TO_LABEL for a in anns)
    for ann in anns:  # stored area/bbox agree with the decoded mask
        mask = dataset.coco.annToMask(ann)
        assert mask.sum() == pytest.approx(ann["area"])


def test_fit_in_canvas_is_the_modelzoo_geometry():
    # COCO 640x480 into 1216x1216: ratio 1.9 -> 1216x912, pad_top (1216-912)//2 = 152
    box = preprocess.fit_in_canvas((480, 640), (1216, 1216))
    assert box.resized_hw == (912, 1216) and (box.pad_top, box.pad_left) == (152, 0)
    box = preprocess.fit_in_canvas((500, 333), (1216, 1216))  # floor(333 * 2.432) = 809
    assert box.resized_hw == (1216, 809) and box.pad_left == (1216 - 809) // 2


def test_preprocess_writes_normalised_centred_bins(tmp_path):
    image_dir = tmp_path / "val2017"
    image_dir.mkdir()
    bgr = np.full((60, 100, 3), (10, 20, 30), np.uint8)  # B, G, R
    cv2.imwrite(str(image_dir / "000000000042.png"), bgr)
    preprocess.main(preprocess.parse_args(["--image_src_path", str(image_dir), "--bin_file_path",
                                           str(tmp_path / "bins"), "--model_input_height", "128",
                                           "--model_input_width", "160"]))
    chw = np.fromfile(tmp_path / "bins" / "000000000042.bin", np.float32).reshape(3, 128, 160)
    meta = json.loads((tmp_path / "bins" / "preprocess_meta.json").read_text())["images"]["000000000042"]
    # ratio min(160/100, 128/60) = 1.6 -> 160x96, pad_top (128-96)//2 = 16
    assert meta == {"original_hw": [60, 100], "resized_hw": [96, 160], "canvas_hw": [128, 160],
                    "pad_top": 16, "pad_left": 0}
    expected_rgb = (np.array([30, 20, 10]) - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375])
    np.testing.assert_allclose(chw[:, 64, 80], expected_rgb, rtol=1e-5)
    assert (chw[:, :16] == 0).all() and (chw[:, 112:] == 0).all() and (chw[:, 16:112] != 0).all()


def test_preprocess_rejects_a_size_that_is_not_a_multiple_of_32(tmp_path):
    with pytest.raises(UserError, match="multiples of 32"):
        preprocess.main(preprocess.parse_args(["--image_src_path", str(tmp_path), "--model_input_height", "100"]))


# ---- normalisation and box arithmetic: mmcv's and mmdet's, bit for bit ---------------------

MMDET_MEAN_RGB, MMDET_STD_RGB = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)  # mmdet 2.8 config


def _every_value_image(seed: int) -> np.ndarray:
    """HWC uint8 BGR holding all 256 values in each channel, plus random pixels."""
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    noise = np.random.default_rng(seed).integers(0, 256, size=(3, 256, 3), dtype=np.uint8)
    return np.concatenate([ramp, noise])


def _mmcv_imnormalize(bgr: np.ndarray) -> np.ndarray:
    """mmcv 1.2 `imnormalize(img, mean, std, to_rgb=True)` as mmdet 2.8's Normalize calls it, CHW."""
    img = bgr.copy().astype(np.float32)
    mean = np.float64(np.array(MMDET_MEAN_RGB, dtype=np.float32).reshape(1, -1))
    stdinv = 1 / np.float64(np.array(MMDET_STD_RGB, dtype=np.float32).reshape(1, -1))
    cv2.cvtColor(img, cv2.COLOR_BGR2RGB, img)
    cv2.subtract(img, mean, img)
    cv2.multiply(img, stdinv, img)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def test_normalisation_gives_the_bytes_of_mmcv_imnormalize():
    image = _every_value_image(0)
    expected = _mmcv_imnormalize(image)
    assert preprocess.normalise_reference(image).tobytes() == expected.tobytes()
    assert preprocess.normalise(image).tobytes() == expected.tobytes()  # the lookup-table path
    # Independently: (x - mean) exact in float64, times 1/std in float64, rounded to float32 once.
    rgb = image[..., ::-1].astype(np.float64)
    mean, std = (np.array(v, dtype=np.float32).astype(np.float64) for v in (MMDET_MEAN_RGB, MMDET_STD_RGB))
    once = ((rgb - mean) * (1 / std)).astype(np.float32).transpose(2, 0, 1)
    assert once.tobytes() == expected.tobytes()
    # What the preprocess did before: float32 reciprocal, float32 product (two roundings).
    before = ((image[..., ::-1].astype(np.float32) - mean.astype(np.float32))
              * (1 / np.array(MMDET_STD_RGB)).astype(np.float32)).transpose(2, 0, 1)
    ramp_differs = before[:, 0].view(np.int32) != expected[:, 0].view(np.int32)
    assert 0.2 < ramp_differs.mean() < 0.4  # 214 of the 768 (channel, value) pairs


def _mmdet_rescale(boxes_in_resized: np.ndarray, geometry: Letterbox):
    """mmdet 2.8's own torch steps: delta2bbox clamps to img_shape, BBoxHead.get_bboxes divides by
    `bboxes.new_tensor(scale_factor)`, simple_test_mask multiplies back, get_seg_masks divides."""
    import torch
    new_h, new_w = geometry.resized_hw
    h, w = geometry.original_hw
    scale_factor = np.array([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32)  # Resize
    bboxes = torch.from_numpy(boxes_in_resized.copy())
    clamped = torch.stack([bboxes[:, 0].clamp(min=0, max=new_w), bboxes[:, 1].clamp(min=0, max=new_h),
                           bboxes[:, 2].clamp(min=0, max=new_w), bboxes[:, 3].clamp(min=0, max=new_h)], dim=-1)
    det_bboxes = clamped / clamped.new_tensor(scale_factor)
    unclamped = bboxes / bboxes.new_tensor(scale_factor)
    factor = torch.from_numpy(scale_factor)
    return det_bboxes.numpy(), ((unclamped * factor) / factor).numpy()


@pytest.mark.parametrize("seed", range(4))
def test_boxes_are_mapped_back_with_mmdet_float32_arithmetic(seed):
    rng = np.random.default_rng(seed)
    canvas_hw = tuple(int(v) * 32 for v in rng.integers(2, 40, size=2))
    geometry = preprocess.fit_in_canvas(tuple(int(v) for v in rng.integers(20, 1500, size=2)), canvas_hw)
    xy = rng.uniform(0, 1, size=(2000, 2, 2)) * np.array(canvas_hw[::-1], dtype=np.float64)
    canvas_boxes = np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1).astype(np.float32)
    output_boxes, paste_boxes = postprocess.canvas_to_original(canvas_boxes, geometry)
    offset = np.array([geometry.pad_left, geometry.pad_top] * 2, dtype=np.float32)
    expected_output, expected_paste = _mmdet_rescale(canvas_boxes - offset, geometry)
    assert output_boxes.dtype == paste_boxes.dtype == np.float32
    np.testing.assert_array_equal(output_boxes.view(np.int32), expected_output.view(np.int32))
    np.testing.assert_array_equal(paste_boxes.view(np.int32), expected_paste.view(np.int32))
    # The float64 mapping used before lands 1 ulp away on some boxes.
    scale = np.array([geometry.resized_hw[1] / geometry.original_hw[1],
                      geometry.resized_hw[0] / geometry.original_hw[0]] * 2)
    before = ((canvas_boxes.astype(np.float64) - offset) / scale).astype(np.float32)
    inside = (canvas_boxes >= offset) & (canvas_boxes - offset <= np.array(geometry.resized_hw[::-1] * 2))
    if not np.allclose(scale, scale.astype(np.float32)):
        assert (before[inside] != expected_output[inside]).any()


# ---- postprocess on outputs that encode the ground truth --------------------------------------

def _canvas_box(box_xywh, geometry: Letterbox) -> np.ndarray:
    x, y, w, h = box_xywh
    sy = geometry.resized_hw[0] / geometry.original_hw[0]
    sx = geometry.resized_hw[1] / geometry.original_hw[1]
    return np.array([x * sx + geometry.pad_left, y * sy + geometry.pad_top,
                     (x + w) * sx + geometry.pad_left, (y + h) * sy + geometry.pad_top], np.float32)


def _mask_28(mask: np.ndarray, box_xywh) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in box_xywh)
    crop = mask[y:y + max(h, 1), x:x + max(w, 1)].astype(np.float32)
    return cv2.resize(crop, (28, 28), interpolation=cv2.INTER_LINEAR)


def _write_outputs(result_dir: Path, stem: str, rows: list[tuple], labels_dtype) -> None:
    dets = np.zeros((100, 5), np.float32)
    labels = np.full(100, -1, labels_dtype)
    masks = np.zeros((100, 80, 28, 28), np.float32)
    for i, (box, score, label, mask28) in enumerate(rows):
        dets[i, :4], dets[i, 4], labels[i] = box, score, label
        masks[i, label] = mask28
    write_bin(result_dir / f"{stem}_0.bin", dets)
    write_bin(result_dir / f"{stem}_1.bin", labels)
    write_bin(result_dir / f"{stem}_2.bin", masks)


@pytest.fixture(scope="module")
def coco_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco_oracle")
    write_synthetic_coco(root / "coco", count=4, seed=5)
    preprocess.main(preprocess.parse_args(["--image_src_path", str(root / "coco" / "val2017"),
                                           "--bin_file_path", str(root / "bins"),
                                           "--model_input_height", str(CANVAS_HW[0]),
                                           "--model_input_width", str(CANVAS_HW[1])]))
    get_info.main(get_info.parse_args(["jpg", str(root / "coco" / "val2017"), str(root / "val2017_jpg.info")]))
    return root


def _postprocess_args(root: Path, result_dir: Path, det_dir: Path, *extra) -> list[str]:
    return ["--bin_data_path", str(result_dir), "--test_annotation", str(root / "val2017_jpg.info"),
            "--val2017_json_path", str(root / "coco" / "annotations" / "instances_val2017.json"),
            "--det_results_path", str(det_dir), "--net_out_num", "3",
            "--net_input_height", str(CANVAS_HW[0]), "--net_input_width", str(CANVAS_HW[1]),
            "--meta", str(root / "bins" / "preprocess_meta.json"), *extra]


def test_ground_truth_outputs_score_ap_one_and_crowd_is_ignored(coco_case, tmp_path):
    root = coco_case
    dataset = CocoInstances(root / "coco")
    meta = json.loads((root / "bins" / "preprocess_meta.json").read_text())["images"]
    result_dir = tmp_path / "result"
    crowd_rows = 0
    for index, image_id in enumerate(dataset.image_ids):
        stem = Path(dataset.coco.imgs[image_id]["file_name"]).stem
        geometry = Letterbox.from_dict(meta[stem])
        rows = []
        for ann in dataset.coco.imgToAnns[image_id]:
            mask = dataset.coco.annToMask(ann)
            label = COCO_CATEGORY_TO_LABEL[ann["category_id"]]
            # a crowd region gets the highest score: counted as a false positive it would cost AP
            score = 0.95 if ann["iscrowd"] else 0.9 - 0.01 * len(rows)
            crowd_rows += ann["iscrowd"]
            rows.append((_canvas_box(ann["bbox"], geometry), score, label, _mask_28(mask, ann["bbox"])))
        if not rows:  # the image without annotations: one low-score false positive
            rows.append((np.array([10, 10, 40, 40], np.float32), 0.01, 0, np.ones((28, 28), np.float32)))
        rows.sort(key=lambda row: -row[1])
        _write_outputs(result_dir, stem, rows, np.int32 if index % 2 else np.int64)
    assert crowd_rows > 0
    det_dir = tmp_path / "det"
    postprocess.main(postprocess.parse_args(_postprocess_args(root, result_dir, det_dir, "--ifShowDetObj")))
    report = json.loads((det_dir / "metrics.json").read_text())
    assert report["bbox"]["AP"] == pytest.approx(1.0, abs=1e-6)
    assert report["segm"]["AP50"] == pytest.approx(1.0, abs=1e-6)
    assert report["segm"]["AP"] > 0.5
    assert report["mmdet"]["bbox_mAP"] == 1.0 and report["images"] == 4
    bbox_results = json.loads((det_dir / "detections_bbox.json").read_text())
    assert len(bbox_results) == len(dataset.coco.dataset["annotations"]) + 1
    for result in bbox_results:  # every box back on a ground-truth box of its image and category
        if result["score"] < 0.05:
            continue
        candidates = dataset.coco.loadAnns(dataset.coco.getAnnIds(imgIds=[result["image_id"]],
                                                                  catIds=[result["category_id"]]))
        assert min(np.abs(np.array(a["bbox"]) - result["bbox"]).max() for a in candidates) < 1e-3
    assert len(list((det_dir / "show").glob("*.jpg"))) == 4
    assert len(list(det_dir.glob("*.txt"))) == 4


def _noisy_outputs(root: Path, result_dir: Path, seed: int) -> None:
    """Per image: jittered ground-truth boxes and masks plus random false positives, some tied."""
    rng = np.random.default_rng(seed)
    dataset = CocoInstances(root / "coco")
    meta = json.loads((root / "bins" / "preprocess_meta.json").read_text())["images"]
    for image_id in dataset.image_ids:
        stem = Path(dataset.coco.imgs[image_id]["file_name"]).stem
        geometry = Letterbox.from_dict(meta[stem])
        rows = []
        for ann in dataset.coco.imgToAnns[image_id]:
            box = _canvas_box(ann["bbox"], geometry) + rng.uniform(-2, 2, size=4).astype(np.float32)
            mask28 = np.clip(_mask_28(dataset.coco.annToMask(ann), ann["bbox"]) + rng.uniform(-0.4, 0.4, (28, 28)), 0, 1)
            rows.append((box, float(rng.uniform(0.2, 1.0)), COCO_CATEGORY_TO_LABEL[ann["category_id"]], mask28))
        for _ in range(3):
            x0, y0 = rng.uniform(0, CANVAS_HW[1] * 0.7), rng.uniform(0, CANVAS_HW[0] * 0.7)
            box = np.array([x0, y0, x0 + rng.uniform(4, 40), y0 + rng.uniform(4, 40)], np.float32)
            rows.append((box, 0.5, int(rng.integers(0, 80)), rng.random((28, 28), dtype=np.float32)))
        rows.sort(key=lambda row: -row[1])
        _write_outputs(result_dir, stem, rows, np.int32)


def test_streamed_files_and_chunked_scores_equal_the_in_memory_way(coco_case, tmp_path, monkeypatch):
    """The detection files and every score are what building full lists + one COCOeval gave."""
    from pycocotools.cocoeval import COCOeval

    from common.eval import coco_eval
    from common.data.coco import COCO_CATEGORY_IDS, COCO_CLASSES
    root, result_dir = coco_case, tmp_path / "result"
    _noisy_outputs(root, result_dir, seed=8)
    monkeypatch.setattr(coco_eval, "EVAL_CHUNK_IMAGES", 3)  # 4 images: a chunk of 3, then 1
    det_dir = tmp_path / "det"
    postprocess.main(postprocess.parse_args(_postprocess_args(root, result_dir, det_dir)))
    report = json.loads((det_dir / "metrics.json").read_text())

    dataset = CocoInstances(root / "coco")
    geometry = postprocess.load_geometry(root / "bins" / "preprocess_meta.json", CANVAS_HW)
    samples = postprocess.listed_samples(str(root / "val2017_jpg.info"), dataset, geometry)
    detections = [det for stem, image_id, _ in samples
                  for det in postprocess.image_detections(result_dir, stem, image_id, geometry[stem])]
    expected = dict(zip(("bbox", "segm"), postprocess.coco_results(detections, with_segm_bbox=True)))
    assert report["detections"] == len(detections) > 4
    for iou_type, results in expected.items():
        assert json.loads((det_dir / f"detections_{iou_type}.json").read_text()) == results
        single_shot = COCOeval(dataset.coco, dataset.coco.loadRes(results), iou_type)
        single_shot.params.catIds, single_shot.params.imgIds = list(COCO_CATEGORY_IDS), [s[1] for s in samples]
        single_shot.params.maxDets = list(coco_eval.MAX_DETS)
        single_shot.evaluate()
        single_shot.accumulate()
        single_shot.summarize()
        assert [report[iou_type][name] for name in coco_eval.STAT_NAMES] == [float(v) for v in single_shot.stats]
        assert report[iou_type]["per_class_AP"] == coco_eval.per_class_ap(single_shot, COCO_CLASSES)
    assert 0 < report["bbox"]["AP"] < 1 and 0 < report["segm"]["AP"] < 1


def test_an_image_listed_twice_is_a_user_error(coco_case, tmp_path):
    root = coco_case
    info = tmp_path / "twice.info"
    lines = (root / "val2017_jpg.info").read_text().splitlines()
    info.write_text("\n".join(lines + [lines[0]]) + "\n")
    args = _postprocess_args(root, tmp_path / "result", tmp_path / "det")
    args[args.index("--test_annotation") + 1] = str(info)
    with pytest.raises(UserError, match=f"{info}: image .* is listed twice"):
        postprocess.main(postprocess.parse_args(args))


def test_all_padding_outputs_give_zero_ap_not_an_error(coco_case, tmp_path):
    root = coco_case
    result_dir = tmp_path / "result"
    for stem in json.loads((root / "bins" / "preprocess_meta.json").read_text())["images"]:
        _write_outputs(result_dir, stem, [], np.int32)
    det_dir = tmp_path / "det"
    postprocess.main(postprocess.parse_args(_postprocess_args(root, result_dir, det_dir)))
    report = json.loads((det_dir / "metrics.json").read_text())
    assert report["detections"] == 0
    assert report["bbox"]["AP"] == 0.0 and report["segm"]["AP"] == 0.0


def test_missing_outputs_and_wrong_input_size_are_user_errors(coco_case, tmp_path):
    root = coco_case
    result_dir = tmp_path / "result"
    stems = list(json.loads((root / "bins" / "preprocess_meta.json").read_text())["images"])
    for stem in stems[1:]:
        _write_outputs(result_dir, stem, [], np.int32)
    with pytest.raises(UserError, match="outputs missing for 1 of 4"):
        postprocess.main(postprocess.parse_args(_postprocess_args(root, result_dir, tmp_path / "det")))
    args = _postprocess_args(root, result_dir, tmp_path / "det", "--allow-missing")
    args[args.index("--net_input_height") + 1] = "256"
    with pytest.raises(UserError, match="bins were made for 128x160"):
        postprocess.main(postprocess.parse_args(args))


def test_paste_mask_follows_pixel_centres():
    # A box exactly covering pixels 10..29 x 20..39 with a full map: every pixel centre inside
    # samples 1 (bilinear at the border pixels still >= 0.5), everything outside stays 0.
    mask = postprocess.paste_mask(np.ones((28, 28), np.float32), np.array([10, 20, 30, 40.0]), (60, 50))
    expected = np.zeros((60, 50), bool)
    expected[20:40, 10:30] = True
    assert np.array_equal(mask, expected)
    assert not postprocess.paste_mask(np.ones((28, 28), np.float32), np.array([5, 5, 5, 9.0]), (20, 20)).any()


def _torch_paste_values(probabilities: np.ndarray, box, image_hw) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """The paste as the postprocess did it with torch (mmdet 2.8's CPU path): sampled values and where."""
    import torch
    import torch.nn.functional as F
    height, width = image_hw
    x0, y0, x1, y1 = (float(v) for v in box)
    left, top = max(int(np.floor(min(x0, x1))) - 1, 0), max(int(np.floor(min(y0, y1))) - 1, 0)
    right, bottom = min(int(np.ceil(max(x0, x1))) + 1, width), min(int(np.ceil(max(y0, y1))) + 1, height)
    if right <= left or bottom <= top or x1 <= x0 or y1 <= y0:
        return None
    xs = (torch.arange(left, right, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
    ys = (torch.arange(top, bottom, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
    grid = torch.stack([xs[None, :].expand(ys.numel(), -1), ys[:, None].expand(-1, xs.numel())], dim=-1)
    source = torch.from_numpy(np.ascontiguousarray(probabilities, dtype=np.float32))[None, None]
    sampled = F.grid_sample(source, grid[None], mode="bilinear", padding_mode="zeros", align_corners=False)
    return sampled[0, 0].numpy(), (slice(top, bottom), slice(left, right))


def _random_paste_case(rng: np.random.Generator, index: int):
    height, width = (int(v) for v in rng.integers(8, 500, size=2))
    probabilities = rng.random((28, 28), dtype=np.float32)
    if index % 3 == 0:  # a hard 0/1 map: many blended values land exactly on 0.5
        probabilities = (probabilities > 0.5).astype(np.float32)
    x0, y0 = rng.uniform(-30, width), rng.uniform(-30, height)
    box = np.array([x0, y0, x0 + rng.uniform(0.05, width), y0 + rng.uniform(0.05, height)])
    # float32 boxes as the postprocess passes them, and float64 ones that float32 cannot hold
    return probabilities, (box.astype(np.float32) if index % 2 else box), (height, width)


SAMPLE_ULPS = 2  # rounding allowed between the numpy paste and torch's grid_sample


def test_numpy_paste_equals_the_torch_paste_value_for_value():
    rng = np.random.default_rng(2024)
    compared = exact = 0
    for index in range(400):
        probabilities, box, image_hw = _random_paste_case(rng, index)
        reference = _torch_paste_values(probabilities, box, image_hw)
        mask = postprocess.paste_mask(probabilities, box, image_hw)
        if reference is None:
            assert not mask.any()
            continue
        values, (rows, cols) = reference
        x0, y0, x1, y1 = (float(v) for v in box)
        xs = postprocess.grid_coordinates(cols.start, cols.stop, x0, x1)
        ys = postprocess.grid_coordinates(rows.start, rows.stop, y0, y1)
        sampled = postprocess.sample_bilinear(probabilities, xs, ys)
        # Equal value for value where torch's kernel fuses its multiply-adds as the numpy code
        # does (this AVX-512 build); another CPU's kernel may round the last bit differently.
        ulps = np.abs(sampled.astype(np.float64) - values) / np.spacing(np.abs(values).astype(np.float32))
        assert sampled.dtype == np.float32 and ulps.max() <= SAMPLE_ULPS, index
        exact += int(np.count_nonzero(sampled == values))
        expected = np.zeros(image_hw, bool)
        expected[rows, cols] = values >= postprocess.MASK_THRESHOLD
        near_threshold = np.zeros(image_hw, bool)
        near_threshold[rows, cols] = np.abs(values - postprocess.MASK_THRESHOLD) <= SAMPLE_ULPS * np.spacing(np.float32(0.5))
        assert np.array_equal(mask[~near_threshold], expected[~near_threshold]), index
        compared += values.size
    assert compared > 1_000_000
    print(f"{exact} of {compared} sampled values bit-equal to torch's grid_sample on this CPU")


def test_synth_command_line_writes_coco(tmp_path):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "common.synth", "coco", "--out", str(tmp_path), "--count", "2",
                             "--height", "64", "--width", "96"], capture_output=True, text=True,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    dataset = CocoInstances(tmp_path)
    assert [dataset.image_size_wh(i) for i in dataset.image_ids] == [(96, 64), (96, 64)]
