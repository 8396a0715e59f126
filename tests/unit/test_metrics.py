import numpy as np
import pytest

from common.cli import UserError
from common.eval.confusion import ConfusionMatrix


def test_confusion_matrix_by_hand():
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    cm = ConfusionMatrix(3)
    cm.update(target, pred)
    # rows = ground truth, columns = prediction; the 255 pixel is ignored
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_array_equal(cm.matrix, expected)
    # IoU: class0 1/(2+2-1)=1/3, class1 2/(2+3-2)=2/3, class2 0/(1+0-0)=0
    np.testing.assert_allclose(cm.iou_per_class(), [1 / 3, 2 / 3, 0.0])
    assert cm.mean_iou() == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)


def test_absent_class_is_left_out_of_the_mean():
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 1, 1]), np.array([0, 1, 1]))
    iou = cm.iou_per_class()
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    assert cm.mean_iou() == 1.0
    assert cm.mean_iou(present_only=False) == 0.5


def test_streaming_equals_one_shot_and_an_independent_computation():
    rng = np.random.default_rng(0)
    targets = [rng.integers(0, 6, size=(7, 9)) for _ in range(5)]
    for t in targets:
        t[rng.random(t.shape) < 0.1] = 255
    preds = [rng.integers(0, 5, size=(7, 9)) for _ in range(5)]
    streaming = ConfusionMatrix(5)
    for t, p in zip(targets, preds):
        streaming.update(t, p)
    all_t = np.concatenate([t.ravel() for t in targets])
    all_p = np.concatenate([p.ravel() for p in preds])
    ious = []
    for c in range(5):
        valid = all_t < 5
        tp = np.sum((all_t == c) & (all_p == c) & valid)
        union = np.sum(((all_t == c) | (all_p == c)) & valid)
        ious.append(tp / union)
    np.testing.assert_allclose(streaming.iou_per_class(), ious)
    assert streaming.images == 5


def test_shape_mismatch_and_bad_prediction_are_user_errors():
    cm = ConfusionMatrix(3)
    with pytest.raises(UserError, match="shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(UserError, match="outside"):
        cm.update(np.zeros((2, 2)), np.full((2, 2), 7))


def test_report_dict_and_table_name_classes():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 1]), np.array([0, 0]))
    result = cm.to_dict(["bg", "fg"])
    assert result["per_class_iou"] == {"bg": 0.5, "fg": 0.0}
    assert "bg" in cm.table(["bg", "fg"]) and "mIoU" in str(cm)


@pytest.mark.parametrize("ignore_index", [255, 0, 300])
def test_uint8_fast_path_counts_as_the_masked_path(ignore_index):
    rng = np.random.default_rng(ignore_index)
    target = rng.integers(0, 256, size=(64, 80)).astype(np.uint8)  # ids >= 19 are void
    target[rng.random(target.shape) < 0.6] = rng.integers(0, 19, size=1)[0]
    pred = rng.integers(0, 19, size=target.shape).astype(np.uint8)
    fast, masked = ConfusionMatrix(19, ignore_index), ConfusionMatrix(19, ignore_index)
    fast.update(target, pred)
    masked.update(target.astype(np.int64), pred.astype(np.int64))  # not uint8: the masked path
    np.testing.assert_array_equal(fast.matrix, masked.matrix)
    assert fast.matrix.sum() > 0


def test_uint8_prediction_out_of_range_on_a_counted_pixel_is_refused():
    target = np.zeros((4, 4), dtype=np.uint8)
    pred = np.zeros((4, 4), dtype=np.uint8)
    pred[1, 1] = 19
    with pytest.raises(UserError, match="outside 0..18"):
        ConfusionMatrix(19, 255).update(target, pred)
