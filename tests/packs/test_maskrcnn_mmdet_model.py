"""MaskRCNN_mmdet/model.py: checkpoint contract and mmdet 2.8 box semantics on hand-made cases.

Expected values are computed here from the formulas of docs/specs/MaskRCNN_mmdet.md §4, not by
calling the model's own helpers.
"""
from __future__ import annotations

import math

import pytest
import torch

from common.weights.checkpoint import read_checkpoint
from common.cli import UserError
from common.weights.manifest import manifest_shapes
from common.weights.demo import save_torch_checkpoint
from common.pipeline.packs import pack_module

torch.set_num_threads(2)
model = pack_module("MaskRCNN_mmdet", "model")


@pytest.fixture(scope="module")
def demo_pth(tmp_path_factory):
    return model.write_demo_checkpoint(
        tmp_path_factory.mktemp("maskrcnn") / "mask_rcnn_r50_fpn_1x_coco_20200205-d4b0c5d6.pth")


# ---- checkpoint contract ---------------------------------------------------------------------

def test_state_dict_names_and_shapes_equal_the_manifest():
    state = model.build_model().state_dict()
    manifest = manifest_shapes("MaskRCNN_mmdet")
    assert sorted(state) == sorted(manifest)
    assert all(tuple(state[name].shape) == shape for name, (shape, _) in manifest.items())


def test_demo_checkpoint_is_an_mmcv_runner_file_and_loads_key_for_key(demo_pth):
    raw = read_checkpoint(demo_pth)
    assert set(raw) == {"meta", "state_dict"}
    assert len(raw["meta"]["CLASSES"]) == 80
    net = model.load_pretrained(demo_pth)
    assert not net.training
    loaded = net.state_dict()
    for name, tensor in raw["state_dict"].items():
        assert torch.equal(loaded[name], tensor), name


def test_renamed_key_is_reported_by_name(demo_pth, tmp_path):
    raw = read_checkpoint(demo_pth)
    state = raw["state_dict"]
    state["roi_head.bbox_head.fc_cls_renamed.weight"] = state.pop("roi_head.bbox_head.fc_cls.weight")
    broken = tmp_path / "broken.pth"
    save_torch_checkpoint(broken, raw)
    with pytest.raises(UserError) as err:
        model.load_pretrained(broken)
    message = str(err.value)
    assert "roi_head.bbox_head.fc_cls.weight" in message and "fc_cls_renamed" in message
    assert str(broken) in message and "\n" not in message


def test_wrong_shape_and_missing_state_dict_are_user_errors(demo_pth, tmp_path):
    raw = read_checkpoint(demo_pth)
    raw["state_dict"]["roi_head.bbox_head.fc_reg.weight"] = torch.zeros(324, 1024)  # torchvision layout
    wrong = tmp_path / "wrong.pth"
    save_torch_checkpoint(wrong, raw)
    with pytest.raises(UserError, match="fc_reg.weight"):
        model.load_pretrained(wrong)
    no_state = tmp_path / "meta_only.pth"
    save_torch_checkpoint(no_state, {"meta": {"epoch": 12}})
    with pytest.raises(UserError, match="state_dict"):
        model.load_pretrained(no_state)


def test_files_without_num_batches_tracked_load(demo_pth, tmp_path):
    raw = read_checkpoint(demo_pth)
    raw["state_dict"] = {k: v for k, v in raw["state_dict"].items() if not k.endswith("num_batches_tracked")}
    assert len(raw["state_dict"]) == 307
    old = tmp_path / "old.pth"
    save_torch_checkpoint(old, raw)
    model.load_pretrained(old)


def test_input_size_is_checked():
    with pytest.raises(UserError, match="multiples of 32"):
        model.build_model(input_hw=(100, 128))
    net = model.build_model(input_hw=(64, 64)).eval()
    with pytest.raises(UserError, match="built for 64x64"):
        net(torch.zeros(1, 3, 96, 64))


# ---- anchors ---------------------------------------------------------------------------------

def test_base_anchors_are_not_rounded():
    # stride 4, scale 8 -> side 32; ratio r = h/w: w = 32/sqrt(r), h = 32*sqrt(r)
    expected = []
    for ratio in (0.5, 1.0, 2.0):
        w, h = 32 / math.sqrt(ratio), 32 * math.sqrt(ratio)
        expected.append([-w / 2, -h / 2, w / 2, h / 2])
    got = model.base_anchors(4)
    assert torch.allclose(got, torch.tensor(expected), atol=1e-5)
    assert got[0, 0].item() == pytest.approx(-22.6274, abs=1e-4)  # torchvision rounds to -23
    assert torch.allclose(model.base_anchors(64), got * 16, atol=1e-4)


def test_grid_anchor_order_is_location_major_without_half_stride():
    base = model.base_anchors(8)
    anchors = model.grid_anchors(base, (3, 5), 8)
    assert anchors.shape == (3 * 5 * 3, 4)
    iy, ix = 2, 4
    for a in range(3):
        row = anchors[(iy * 5 + ix) * 3 + a]
        assert torch.allclose(row, base[a] + torch.tensor([ix * 8.0, iy * 8.0, ix * 8.0, iy * 8.0]))


# ---- delta decoding --------------------------------------------------------------------------

def test_decode_matches_hand_computed_boxes():
    box = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # centre (20, 40), w 20, h 40
    deltas = torch.tensor([[0.5, -0.25, math.log(2.0), 0.0]])
    # gx = 20 + 20*0.5 = 30, gy = 40 - 40*0.25 = 30, gw = 40, gh = 40
    got = model.decode_deltas(box, deltas, (1.0, 1.0, 1.0, 1.0), (1000, 1000))
    assert torch.allclose(got, torch.tensor([[10.0, 10.0, 50.0, 50.0]]))
    clipped = model.decode_deltas(box, deltas, (1.0, 1.0, 1.0, 1.0), (45, 48))  # H 45, W 48
    assert torch.allclose(clipped, torch.tensor([[10.0, 10.0, 48.0, 45.0]]))


def test_decode_uses_rcnn_stds_per_class_and_clamps_both_sides():
    box = torch.tensor([[100.0, 100.0, 200.0, 150.0]])  # centre (150, 125), w 100, h 50
    # class 0: dx 5 * 0.1 = 0.5 -> gx 200; class 1: dw 50 * 0.2 = 10 -> clamped to ln(62.5)
    # class 2: dh -50 * 0.2 = -10 -> clamped to -ln(62.5), gh = 50 * 0.016
    deltas = torch.tensor([[5.0, 0, 0, 0, 0, 0, 50.0, 0, 0, 0, 0, -50.0]])
    got = model.decode_deltas(box, deltas, (0.1, 0.1, 0.2, 0.2), (10000, 10000)).reshape(3, 4)
    assert torch.allclose(got[0], torch.tensor([150.0, 100.0, 250.0, 150.0]))
    half_w = 100 * 62.5 / 2
    assert torch.allclose(got[1], torch.tensor([150 - half_w, 100, 150 + half_w, 150]).clamp(0, 10000))
    half_h = 50 * 0.016 / 2
    assert torch.allclose(got[2], torch.tensor([100.0, 125 - half_h, 200.0, 125 + half_h]), atol=1e-4)


# ---- RoI level assignment and aligned RoIAlign ------------------------------------------------

@pytest.mark.parametrize("side, level", [(10, 0), (111.5, 0), (112, 1), (223.5, 1), (224, 2),
                                         (447, 2), (448, 3), (2000, 3)])
def test_roi_level_rule(side, level):
    # level = clamp(floor(log2(side / 56 + 1e-6)), 0, 3): P2 below 112, P3 below 224, P4 below 448
    box = torch.tensor([[5.0, 7.0, 5.0 + side, 7.0 + side]])
    assert int(model.roi_levels(box)[0]) == level


def test_multi_level_roi_align_is_aligned_and_uses_the_assigned_level():
    # Feature value = x index of the cell on every level: bilinear sampling of a linear ramp is
    # exact, so each output bin equals the mean sample x, i.e. the bin centre in feature
    # coordinates with aligned=True: x1 * scale - 0.5 + (j + 0.5) * bin_width.
    sizes = [(160, 160), (80, 80), (40, 40), (20, 20)]
    feats = [torch.arange(w, dtype=torch.float32).expand(1, 2, h, w).contiguous() for h, w in sizes]
    boxes = torch.tensor([[40.0, 40.0, 120.0, 100.0],    # sqrt(80*60) = 69 -> P2
                          [100.0, 60.0, 300.0, 260.0]])  # 200 -> P3
    out = model.multi_level_roi_align(feats, boxes, 7)
    for row, (stride, box) in enumerate(zip((4, 8), boxes)):
        x1, x2 = box[0].item() / stride - 0.5, box[2].item() / stride - 0.5
        bin_w = (x2 - x1) / 7
        expected = torch.tensor([x1 + (j + 0.5) * bin_w for j in range(7)])
        assert torch.allclose(out[row, 0, 3], expected, atol=1e-4), row


def test_legacy_roi_align_equals_aligned_except_below_one_cell():
    feats = [torch.randn(1, 3, 160 // s, 160 // s, generator=torch.Generator().manual_seed(s)) for s in (4, 8, 16, 32)]
    boxes = torch.tensor([[10.0, 12.0, 90.0, 60.0], [20.0, 30.0, 150.0, 155.0]])  # P2 and P3, many cells
    exact = model.multi_level_roi_align(feats, boxes, 7)
    assert torch.allclose(model.multi_level_roi_align(feats, boxes, 7, legacy=True), exact, atol=1e-5)
    tiny = torch.tensor([[40.0, 40.0, 41.0, 42.0]])  # a quarter of a P2 cell wide
    assert not torch.allclose(model.multi_level_roi_align(feats, tiny, 7, legacy=True),
                              model.multi_level_roi_align(feats, tiny, 7), atol=1e-3)


def test_class_offset_nms_is_per_class():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [0.0, 0, 10, 10], [50.0, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([3, 3, 4, 3])
    # box 1 overlaps box 0 (IoU 9/11 > 0.5) in the same class -> gone; box 2 is another class
    keep = model.class_offset_nms(boxes, scores, labels, 0.5)
    assert keep.tolist() == [0, 2, 3]
    assert model.class_offset_nms(boxes[:0], scores[:0], labels[:0], 0.5).numel() == 0


class _OffsetNms(torch.nn.Module):
    def forward(self, boxes, scores, labels):
        return model.class_offset_nms(boxes, scores, labels, 0.7)


def _greedy_nms_in_index_order_of_ties(boxes, scores, labels, threshold):
    """Greedy NMS visiting boxes by descending score, equal scores by ascending index."""
    def iou(a, b):
        width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = width * height
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(labels[i] != labels[j] or iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def test_nms_visits_tied_scores_in_index_order_in_pytorch_and_onnx_runtime(tmp_path):
    """Why tied RPN scores matter (README "Tied scores"): in a chain of overlapping boxes of one
    score, the first one visited decides which of them survive; torchvision's nms (a stable
    sort) and ONNX Runtime's NonMaxSuppression (ties by lower index) both start from the lowest
    index, so the two backends agree whenever they see the same scores in the same order."""
    import onnxruntime as ort
    generator = torch.Generator().manual_seed(0)
    starts = torch.rand(150, 2, generator=generator) * 1000
    # chains of 4 boxes 8 px apart along x (IoU of neighbours 0.85, of next-but-one 0.72)
    boxes = torch.cat([torch.cat([starts + torch.tensor([8.0 * k, 0]), starts + torch.tensor([8.0 * k + 100, 100])], 1)
                       for k in range(4)])
    boxes = boxes[torch.randperm(len(boxes), generator=generator)]
    scores = torch.randint(0, 3, (len(boxes),), generator=generator).float() / 4 + 0.25  # 3 values
    labels = torch.randint(0, 2, (len(boxes),), generator=generator)
    path = tmp_path / "nms.onnx"
    torch.onnx.export(_OffsetNms(), (boxes, scores, labels), str(path), opset_version=16, dynamo=False,
                      input_names=["boxes", "scores", "labels"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_keep = session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy(), "labels": labels.numpy()})[0]
    expected = _greedy_nms_in_index_order_of_ties(boxes.tolist(), scores.tolist(), labels.tolist(), 0.7)
    assert model.class_offset_nms(boxes, scores, labels, 0.7).tolist() == expected
    assert onnx_keep.tolist() == expected
    reversed_ties = _greedy_nms_in_index_order_of_ties(boxes.flip(0).tolist(), scores.flip(0).tolist(),
                                                       labels.flip(0).tolist(), 0.7)
    assert sorted(len(boxes) - 1 - i for i in reversed_ties) != sorted(expected)  # the order decides


# ---- outputs ---------------------------------------------------------------------------------

def test_pad_detections_keeps_real_rows_and_zeroes_the_rest():
    boxes = torch.tensor([[1.0, 2, 3, 4], [5.0, 6, 7, 8]])
    scores = torch.tensor([0.9, 0.3])
    labels = torch.tensor([7, 0])
    masks = torch.rand(3, 80, 28, 28) + 0.1  # 2 real rows + the extra empty box
    dets, out_labels, out_masks = model.pad_detections(boxes, scores, labels, masks, 100)
    assert dets.shape == (100, 5) and out_labels.shape == (100,) and out_masks.shape == (100, 80, 28, 28)
    assert torch.equal(dets[:2, :4], boxes) and torch.equal(dets[:2, 4], scores)
    assert out_labels[:2].tolist() == [7, 0] and (out_labels[2:] == -1).all()
    assert torch.equal(out_masks[:2], masks[:2])
    assert (dets[2:] == 0).all() and (out_masks[2:] == 0).all()


def test_image_with_no_detection_gives_all_padding(demo_pth):
    net = model.load_pretrained(demo_pth)
    with torch.no_grad():
        net.roi_head.bbox_head.fc_cls.bias[model.NUM_CLASSES] = 100.0  # background always wins
        dets, labels, masks = (out[0] for out in net(torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))))
    assert dets.shape == (100, 5) and (dets == 0).all()
    assert (labels == -1).all() and labels.dtype == torch.int64
    assert masks.shape == (100, 80, 28, 28) and (masks == 0).all()
