"""common/eval/coco_eval.py: the chunked evaluation gives exactly the single-shot COCOeval numbers.

The reference is pycocotools run the plain way (one loadRes, evaluate, accumulate, summarize
over every detection); the synthetic set has polygon, RLE and crowd ground truth, an image
without objects, several detections per (image, category), tied scores across images,
detections of absent categories and images fed out of id order.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from common.eval import coco_eval
from common.data.coco import COCO_CATEGORY_IDS, COCO_CLASSES, CocoInstances
from common.data.synth.coco import write_synthetic_coco


@pytest.fixture(scope="module")
def coco_gt(tmp_path_factory):
    root = write_synthetic_coco(tmp_path_factory.mktemp("coco_eval"), count=7, seed=11)
    return CocoInstances(root).coco


def _jittered_mask(coco, ann, rng) -> np.ndarray:
    mask = coco.annToMask(ann)
    shift = tuple(int(v) for v in rng.integers(-3, 4, size=2))
    return np.roll(mask, shift, axis=(0, 1))


def _synthetic_results(coco, seed: int, with_segm_bbox: bool) -> tuple[list[dict], list[dict]]:
    """Detections near the ground truth, duplicates, false positives and tied scores."""
    rng = np.random.default_rng(seed)
    bbox_results, segm_results = [], []
    tied_score = 0.61  # the same score in several images: the stable sort order must survive
    for image_id in coco.getImgIds():  # file order, ids descending: not the evaluation order
        info = coco.imgs[image_id]
        height, width = info["height"], info["width"]
        rows = []
        for ann in coco.imgToAnns[image_id]:
            x, y, w, h = ann["bbox"]
            box = [x + rng.uniform(-2, 2), y + rng.uniform(-2, 2), w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)]
            rows.append((box, float(rng.uniform(0.3, 1.0)), ann["category_id"], _jittered_mask(coco, ann, rng)))
            if rng.random() < 0.5:  # a second, worse detection of the same object
                rows.append((box, tied_score, ann["category_id"], _jittered_mask(coco, ann, rng)))
        for _ in range(int(rng.integers(1, 5))):  # false positives, some of categories not in the image
            x0, y0 = rng.uniform(0, width * 0.7), rng.uniform(0, height * 0.7)
            w, h = rng.uniform(2, width * 0.3), rng.uniform(2, height * 0.3)
            mask = np.zeros((height, width), np.uint8)
            mask[int(y0):int(y0 + h), int(x0):int(x0 + w)] = 1
            category = int(rng.choice(COCO_CATEGORY_IDS[:6]))
            rows.append(([x0, y0, w, h], tied_score if rng.random() < 0.3 else float(rng.uniform(0.01, 0.9)),
                         category, mask))
        for box, score, category, mask in rows:
            entry = {"image_id": image_id, "bbox": [float(v) for v in box], "score": score, "category_id": category}
            bbox_results.append(entry)
            segm = {key: value for key, value in entry.items() if key != "bbox" or with_segm_bbox}
            segm["segmentation"] = coco_eval.encode_mask(mask)
            segm_results.append(segm)
    return bbox_results, segm_results


def _single_shot(coco, results: list[dict], iou_type: str, image_ids) -> COCOeval:
    """pycocotools the plain way: every detection loaded and evaluated at once."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iou_type)
        evaluator.params.catIds = list(COCO_CATEGORY_IDS)
        evaluator.params.imgIds = list(image_ids)
        evaluator.params.maxDets = list(coco_eval.MAX_DETS)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _chunked(coco, results: list[dict], iou_type: str, image_ids, chunk_images: int):
    evaluator = coco_eval.ChunkedCocoEval(coco, iou_type, image_ids, COCO_CATEGORY_IDS, chunk_images)
    for image_id in image_ids:  # file order, not id order
        evaluator.add_image(image_id, [r for r in results if r["image_id"] == image_id])
    with contextlib.redirect_stdout(io.StringIO()):
        accumulated = evaluator.accumulate()
        stats = evaluator.summarize(COCO_CLASSES, verbose=False)
    return accumulated, stats


@pytest.mark.parametrize("with_segm_bbox", [True, False], ids=["segm_box_area", "segm_mask_area"])
@pytest.mark.parametrize("chunk_images", [1, 2, 1000], ids=["chunk1", "chunk2", "one_chunk"])
def test_chunked_evaluation_equals_single_shot(coco_gt, chunk_images, with_segm_bbox):
    bbox_results, segm_results = _synthetic_results(coco_gt, seed=3, with_segm_bbox=with_segm_bbox)
    image_ids = coco_gt.getImgIds()
    assert len(image_ids) > 2 * 2  # several chunks of 2
    for iou_type, results in (("bbox", bbox_results), ("segm", segm_results)):
        reference = _single_shot(coco_gt, results, iou_type, image_ids)
        accumulated, stats = _chunked(coco_gt, results, iou_type, image_ids, chunk_images)
        assert [stats[name] for name in coco_eval.STAT_NAMES] == [float(v) for v in reference.stats], iou_type
        assert stats["per_class_AP"] == coco_eval.per_class_ap(reference, COCO_CLASSES)
        for table in ("precision", "recall", "scores"):
            assert np.array_equal(accumulated.eval[table], reference.eval[table]), (iou_type, table)
        assert 0 < stats["AP"] < 1  # a set that exercises both matches and misses


def test_segm_area_rule_changes_only_the_area_split(coco_gt):
    """With its box, a segm detection is put in a size range by box area (mmdet 2.8)."""
    _, with_box = _synthetic_results(coco_gt, seed=3, with_segm_bbox=True)
    _, without_box = _synthetic_results(coco_gt, seed=3, with_segm_bbox=False)
    image_ids = coco_gt.getImgIds()
    with contextlib.redirect_stdout(io.StringIO()):
        box_area = coco_eval.evaluate(coco_gt, with_box, "segm", image_ids, COCO_CATEGORY_IDS, COCO_CLASSES, chunk_images=2)
        mask_area = coco_eval.evaluate(coco_gt, without_box, "segm", image_ids, COCO_CATEGORY_IDS, COCO_CLASSES,
                                       chunk_images=2)
    assert box_area["AP"] == mask_area["AP"] and box_area["AP50"] == mask_area["AP50"]
    assert [box_area[k] for k in ("APs", "APm", "APl")] != [mask_area[k] for k in ("APs", "APm", "APl")]


def test_no_detection_at_all_scores_zero_in_any_chunking(coco_gt):
    image_ids = coco_gt.getImgIds()
    with contextlib.redirect_stdout(io.StringIO()):
        by_chunk = [coco_eval.evaluate(coco_gt, [], iou_type, image_ids, COCO_CATEGORY_IDS, COCO_CLASSES,
                                       chunk_images=chunk)
                    for iou_type in ("bbox", "segm") for chunk in (1, 1000)]
    for stats in by_chunk:
        assert stats == by_chunk[0]
        assert stats["AP"] == 0.0 and stats["AR100"] == 0.0


def test_evaluation_leaves_the_callers_results_unchanged(coco_gt):
    bbox_results, segm_results = _synthetic_results(coco_gt, seed=4, with_segm_bbox=True)
    before = copy.deepcopy((bbox_results, segm_results))
    image_ids = coco_gt.getImgIds()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate(coco_gt, bbox_results, "bbox", image_ids, COCO_CATEGORY_IDS, COCO_CLASSES, chunk_images=2)
        coco_eval.evaluate(coco_gt, segm_results, "segm", image_ids, COCO_CATEGORY_IDS, COCO_CLASSES, chunk_images=2)
    assert (bbox_results, segm_results) == before  # loadRes adds id/area/... to the entries it gets


def test_an_image_added_twice_or_unknown_is_refused(coco_gt):
    image_ids = coco_gt.getImgIds()
    evaluator = coco_eval.ChunkedCocoEval(coco_gt, "bbox", image_ids, COCO_CATEGORY_IDS, chunk_images=1)
    evaluator.add_image(image_ids[0], [])
    with pytest.raises(ValueError, match="added twice"):
        evaluator.add_image(image_ids[0], [])
    with pytest.raises(ValueError, match="not one of the evaluated images"):
        evaluator.add_image(max(image_ids) + 1, [])


# ---- results files written as they come ---------------------------------------------------------

def test_results_json_parses_to_the_list_written(tmp_path):
    entries = [{"image_id": 1, "bbox": [0.5, 1.0, 2.0, 3.25], "score": 0.9, "category_id": 1},
               {"image_id": 2, "segmentation": {"size": [4, 5], "counts": "abc"}, "score": 0.1, "category_id": 90}]
    with coco_eval.results_json(tmp_path / "some.json") as writer:
        writer.write(entries[:1])
        writer.write([])
        writer.write(entries[1:])
    assert json.loads((tmp_path / "some.json").read_text()) == entries and writer.count == 2
    with coco_eval.results_json(tmp_path / "none.json"):
        pass
    assert json.loads((tmp_path / "none.json").read_text()) == []


def test_results_json_is_not_left_under_its_name_when_interrupted(tmp_path):
    with pytest.raises(RuntimeError):
        with coco_eval.results_json(tmp_path / "cut.json") as writer:
            writer.write([{"image_id": 1}])
            raise RuntimeError("killed midway")
    assert list(tmp_path.iterdir()) == []
