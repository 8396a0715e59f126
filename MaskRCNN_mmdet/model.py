"""Mask R-CNN R50-FPN inference with mmdetection 2.8 numerics, built on torchvision ops.

Loads `mask_rcnn_r50_fpn_1x_coco_20200205-d4b0c5d6.pth` (mmcv runner format: `meta` +
`state_dict`) key for key: attribute names follow mmdet's module tree, so no renaming table.
The forward pass is the exported graph: one image [1,3,H,W] (mmdet-normalised RGB, H and W
multiples of 32) in, fixed-size outputs out, padded when fewer than 100 objects are found
(each with a leading batch axis of 1, so a per-image output file is exactly the guide's size):

    dets   [1, 100, 5]          x1, y1, x2, y2, score in input-canvas pixels (padding rows: 0)
    labels [1, 100]    int64    0..79 in mmdet CLASSES order (padding rows: -1)
    masks  [1, 100, 80, 28, 28] sigmoid probabilities of every class (padding rows: 0)

Where torchvision's detection defaults differ from mmdet 2.8 this file follows mmdet (facts
from docs/specs/MaskRCNN_mmdet.md §4): unrounded base anchors, no RPN min-size filter, RoIAlign
aligned=True with adaptive sampling (sampling_ratio 0) and mmdet's level rule, dw/dh clamped
on both sides, no small-box filter after the box head.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import nms, roi_align

from common.weights.checkpoint import WeightsLayout, load_container_into, read_checkpoint
from common.cli import UserError
from common.data.coco import COCO_CLASSES
from common.weights.demo import random_state_dict, save_torch_checkpoint
from maskrcnn_mmdet.config import (PACK, MASK_SIZE, MAX_PER_IMG, NUM_CLASSES, PIXEL_MEAN_RGB, PIXEL_STD_RGB,  # noqa: F401
                             SIZE_DIVISOR)

MODEL_NAME = PACK.manifest  # the manifest's and the metadata's name

# AnchorGenerator of configs/_base_/models/mask_rcnn_r50_fpn.py
ANCHOR_STRIDES = (4, 8, 16, 32, 64)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
ANCHOR_SCALES = (8.0,)

# test_cfg.rpn and test_cfg.rcnn of the same config
RPN_NMS_PRE = 1000
RPN_NMS_POST = 1000
RPN_NMS_IOU = 0.7
RCNN_SCORE_THR = 0.05
RCNN_NMS_IOU = 0.5

RPN_STDS = (1.0, 1.0, 1.0, 1.0)
RCNN_STDS = (0.1, 0.1, 0.2, 0.2)
# DeltaXYWHBBoxCoder's wh_ratio_clip=16/1000: dw, dh are clamped to +-|ln(16/1000)|.
MAX_LOG_RATIO = abs(math.log(16 / 1000))

# SingleRoIExtractor: P2..P5 only, finest_scale 56
ROI_STRIDES = (4, 8, 16, 32)
FINEST_SCALE = 56
BOX_ROI_SIZE = 7
MASK_ROI_SIZE = 14

PADDED_LABEL = -1


# ---- blocks ----------------------------------------------------------------------------------

class ConvModule(nn.Module):
    """mmcv ConvModule without norm: `<name>.conv` holds the weights, ReLU optional."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, relu: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class ResNet50(nn.Module):
    """ResNet-50 'pytorch' style (stride on the 3x3 conv): torchvision's layers, C2..C5 out.

    torchvision's Bottleneck uses mmdet's attribute names (conv1..3, bn1..3, downsample.0/1),
    so the keys match `backbone.*` of the checkpoint without renaming.
    """

    def __init__(self):
        super().__init__()
        body = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.maxpool = body.conv1, body.bn1, body.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = body.layer1, body.layer2, body.layer3, body.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


class FPN(nn.Module):
    """mmdet FPN, 256 channels, 5 outputs; P6 = max_pool(P5, 1, stride 2) (no extra convs)."""

    def __init__(self, in_channels=(256, 512, 1024, 2048), out_channels: int = 256):
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1, relu=False) for c in in_channels)
        self.fpn_convs = nn.ModuleList(ConvModule(out_channels, out_channels, 3, relu=False) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]
        outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs


class RPNHead(nn.Module):
    def __init__(self, channels: int = 256, num_anchors: int = 3):
        super().__init__()
        self.rpn_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(channels, num_anchors, 1)
        self.rpn_reg = nn.Conv2d(channels, num_anchors * 4, 1)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores [N_anchors] (sigmoid) and deltas [N_anchors, 4] in (y, x, anchor) order."""
        x = F.relu(self.rpn_conv(feat))
        scores = self.rpn_cls(x)[0].permute(1, 2, 0).reshape(-1).sigmoid()
        deltas = self.rpn_reg(x)[0].permute(1, 2, 0).reshape(-1, 4)
        return scores, deltas


class Shared2FCBBoxHead(nn.Module):
    def __init__(self, in_features: int = 256 * BOX_ROI_SIZE ** 2, hidden: int = 1024):
        super().__init__()
        self.shared_fcs = nn.ModuleList([nn.Linear(in_features, hidden), nn.Linear(hidden, hidden)])
        self.fc_cls = nn.Linear(hidden, NUM_CLASSES + 1)  # background is the LAST column
        self.fc_reg = nn.Linear(hidden, NUM_CLASSES * 4)  # class-specific, no background rows

    def forward(self, roi_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = roi_feats.flatten(1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)


class FCNMaskHead(nn.Module):
    def __init__(self, channels: int = 256, num_convs: int = 4):
        super().__init__()
        self.convs = nn.ModuleList(ConvModule(channels, channels, 3, relu=True) for _ in range(num_convs))
        self.upsample = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.conv_logits = nn.Conv2d(channels, NUM_CLASSES, 1)

    def forward(self, roi_feats: torch.Tensor) -> torch.Tensor:
        x = roi_feats
        for conv in self.convs:
            x = conv(x)
        return self.conv_logits(F.relu(self.upsample(x)))


class StandardRoIHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.bbox_head = Shared2FCBBoxHead()
        self.mask_head = FCNMaskHead()


# ---- box geometry (mmdet 2.8 semantics) ------------------------------------------------------

def base_anchors(stride: int, ratios=ANCHOR_RATIOS, scales=ANCHOR_SCALES) -> torch.Tensor:
    """AnchorGenerator.gen_single_level_base_anchors, float32, centre offset 0, NOT rounded.

    Ratio = h/w; scale-major order. Same float32 operation order as mmdet, so bit-equal.
    """
    ratios_t = torch.tensor(ratios, dtype=torch.float32)
    scales_t = torch.tensor(scales, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios_t)
    w_ratios = 1 / h_ratios
    ws = (stride * w_ratios[:, None] * scales_t[None, :]).reshape(-1)
    hs = (stride * h_ratios[:, None] * scales_t[None, :]).reshape(-1)
    return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)


def grid_anchors(base: torch.Tensor, feat_hw: tuple[int, int], stride: int) -> torch.Tensor:
    """All anchors of one level, location-major (row by row), base anchors inner; no half-stride shift."""
    feat_h, feat_w = feat_hw
    shift_x = torch.arange(feat_w, dtype=torch.float32) * stride
    shift_y = torch.arange(feat_h, dtype=torch.float32) * stride
    yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
    shifts = torch.stack([xx.reshape(-1), yy.reshape(-1), xx.reshape(-1), yy.reshape(-1)], dim=-1)
    return (base[None, :, :] + shifts[:, None, :]).reshape(-1, 4)


def decode_deltas(boxes: torch.Tensor, deltas: torch.Tensor, stds, max_hw: tuple[int, int]) -> torch.Tensor:
    """delta2bbox: boxes [N,4], deltas [N,4k] -> boxes [N,4k], clipped to [0,W] x [0,H].

    Widths are x2-x1 (no +1); dw/dh are clamped to +-ln(1000/16) on both sides (mmdet),
    where torchvision clamps the upper side only.
    """
    stds_t = torch.tensor(stds, dtype=deltas.dtype).repeat(deltas.shape[1] // 4)
    deltas = deltas * stds_t
    dx, dy = deltas[:, 0::4], deltas[:, 1::4]
    dw = deltas[:, 2::4].clamp(min=-MAX_LOG_RATIO, max=MAX_LOG_RATIO)
    dh = deltas[:, 3::4].clamp(min=-MAX_LOG_RATIO, max=MAX_LOG_RATIO)
    px = ((boxes[:, 0] + boxes[:, 2]) * 0.5)[:, None]
    py = ((boxes[:, 1] + boxes[:, 3]) * 0.5)[:, None]
    pw = (boxes[:, 2] - boxes[:, 0])[:, None]
    ph = (boxes[:, 3] - boxes[:, 1])[:, None]
    gw = pw * dw.exp()
    gh = ph * dh.exp()
    gx = px + pw * dx
    gy = py + ph * dy
    height, width = max_hw
    x1 = (gx - gw * 0.5).clamp(min=0, max=width)
    y1 = (gy - gh * 0.5).clamp(min=0, max=height)
    x2 = (gx + gw * 0.5).clamp(min=0, max=width)
    y2 = (gy + gh * 0.5).clamp(min=0, max=height)
    return torch.stack([x1, y1, x2, y2], dim=-1).reshape(deltas.shape)


def roi_levels(boxes: torch.Tensor, num_levels: int = len(ROI_STRIDES)) -> torch.Tensor:
    """SingleRoIExtractor.map_roi_levels: floor(log2(sqrt(wh)/56 + 1e-6)) clamped to 0..3."""
    scale = torch.sqrt((boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0]))
    levels = torch.floor(torch.log2(scale / FINEST_SCALE + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1)


def multi_level_roi_align(feats: list[torch.Tensor], boxes: torch.Tensor, output_size: int,
                          legacy: bool = False) -> torch.Tensor:
    """RoIAlign (aligned=True, sampling_ratio=0) of each box on the level mmdet assigns it.

    Every level is pooled for every box, but a box that does not belong to a level is replaced
    by an empty box there (zero area -> zero samples, no cost), and the right level's result is
    picked with `where`: static shapes for the exported graph, no arithmetic mixing of levels.

    `legacy` is the opset-11 form (mmcv's own ONNX emulation): boxes shifted by -0.5 cell and a
    non-aligned RoIAlign, which exports as RoiAlign-10. It equals aligned=True except for RoIs
    under one feature cell, which the legacy kernel enlarges to one cell.
    """
    levels = roi_levels(boxes)
    empty = torch.zeros_like(boxes)
    batch_index = torch.zeros_like(boxes[:, :1])
    pooled = None
    for level, (feat, stride) in enumerate(zip(feats, ROI_STRIDES)):
        on_level = (levels == level)[:, None]
        level_boxes = torch.where(on_level, boxes, empty)
        if legacy:
            level_boxes = level_boxes - 0.5 * stride
        level_rois = torch.cat([batch_index, level_boxes], dim=1)
        level_feats = roi_align(feat, level_rois, output_size, spatial_scale=1.0 / stride,
                                sampling_ratio=0, aligned=not legacy)
        pooled = level_feats if pooled is None else torch.where(on_level[:, :, None, None], level_feats, pooled)
    return pooled


def class_offset_nms(boxes: torch.Tensor, scores: torch.Tensor, class_ids: torch.Tensor,
                     iou_threshold: float) -> torch.Tensor:
    """mmcv batched_nms: shift each class by id * (max coordinate + 1), one NMS, score-sorted keep.

    The max is taken over the boxes plus a 0 so an empty candidate set needs no special case
    (all coordinates are clipped to >= 0, so this equals mmcv's boxes.max() otherwise).
    Suppression is IoU > threshold (torchvision / mmcv CUDA; mmcv CPU uses >=). From 10000
    candidates mmcv loops over classes instead; the kept set is the same up to the float
    rounding of the shifted coordinates.
    """
    max_coordinate = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = class_ids.to(boxes.dtype) * (max_coordinate + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


# ---- the network -----------------------------------------------------------------------------

class MaskRCNN(nn.Module):
    """Backbone + neck + RPN + RoI heads; forward = the exported single-image inference."""

    def __init__(self, input_hw: tuple[int, int] | None = None, labels_int32: bool = False,
                 legacy_roi_align: bool = False):
        super().__init__()
        self.backbone = ResNet50()
        self.neck = FPN()
        self.rpn_head = RPNHead()
        self.roi_head = StandardRoIHead()
        self.input_hw = tuple(input_hw) if input_hw else None
        self.labels_int32 = bool(labels_int32)
        self.legacy_roi_align = bool(legacy_roi_align)
        self._base_anchors = [base_anchors(s) for s in ANCHOR_STRIDES]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_input_shape(image, self.input_hw)
        image_hw = (int(image.shape[2]), int(image.shape[3]))
        feats = self.neck(self.backbone(image))
        proposals = self.propose(feats, image_hw)
        boxes, scores, labels = self.detect(feats[:len(ROI_STRIDES)], proposals, image_hw)
        # One extra empty box so the mask head never runs on an empty batch; its row also
        # supplies the padding rows' masks (zeroed in pad_detections).
        masks = self.segment(feats[:len(ROI_STRIDES)], torch.cat([boxes, boxes.new_zeros(1, 4)]))
        dets, labels, masks = pad_detections(boxes, scores, labels, masks, MAX_PER_IMG)
        if self.labels_int32:  # the graph after label_to_int32.py (the Ascend variant)
            labels = labels.to(torch.int32)
        # Leading batch axis of 1: runners split outputs per sample along axis 0 (ais_bench
        # contract), so each image's files hold exactly the guide's [100,5], [100], [100,80,28,28].
        return dets[None], labels[None], masks[None]

    def propose(self, feats: list[torch.Tensor], image_hw: tuple[int, int]) -> torch.Tensor:
        """RPNHead._get_bboxes_single with test_cfg.rpn: per-level top 1000, per-level NMS 0.7."""
        level_scores, level_deltas, level_anchors, level_ids = [], [], [], []
        for level, (feat, stride) in enumerate(zip(feats, ANCHOR_STRIDES)):
            scores, deltas = self.rpn_head(feat)
            anchors = grid_anchors(self._base_anchors[level], tuple(feat.shape[2:]), stride)
            if scores.shape[0] > RPN_NMS_PRE:
                # a full descending sort cut at 1000, as mmdet (not topk): same order of ties
                scores, order = torch.sort(scores, descending=True)
                scores, top = scores[:RPN_NMS_PRE], order[:RPN_NMS_PRE]
                deltas, anchors = deltas[top], anchors[top]
            level_scores.append(scores)
            level_deltas.append(deltas)
            level_anchors.append(anchors)
            level_ids.append(torch.full_like(scores, level))
        scores = torch.cat(level_scores)
        proposals = decode_deltas(torch.cat(level_anchors), torch.cat(level_deltas), RPN_STDS, image_hw)
        keep = class_offset_nms(proposals, scores, torch.cat(level_ids), RPN_NMS_IOU)[:RPN_NMS_POST]
        return proposals[keep]

    def detect(self, feats: list[torch.Tensor], proposals: torch.Tensor, image_hw: tuple[int, int]):
        """BBoxHead.get_bboxes + multiclass_nms with test_cfg.rcnn (score > 0.05, NMS 0.5, 100)."""
        roi_feats = multi_level_roi_align(feats, proposals, BOX_ROI_SIZE, self.legacy_roi_align)
        cls_logits, deltas = self.roi_head.bbox_head(roi_feats)
        class_scores = F.softmax(cls_logits, dim=1)[:, :NUM_CLASSES]
        class_boxes = decode_deltas(proposals, deltas, RCNN_STDS, image_hw).reshape(-1, NUM_CLASSES, 4)
        # Candidates in mmdet's order: (proposal, class) pairs row-major, score strictly > thr.
        flat_scores = class_scores.reshape(-1)
        candidates = torch.nonzero(flat_scores > RCNN_SCORE_THR).reshape(-1)
        boxes = class_boxes.reshape(-1, 4)[candidates]
        scores = flat_scores[candidates]
        labels = candidates % NUM_CLASSES
        keep = class_offset_nms(boxes, scores, labels, RCNN_NMS_IOU)[:MAX_PER_IMG]
        return boxes[keep], scores[keep], labels[keep]

    def segment(self, feats: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        """FCNMaskHead on the final boxes: sigmoid of all 80 class maps, [K, 80, 28, 28]."""
        roi_feats = multi_level_roi_align(feats, boxes, MASK_ROI_SIZE, self.legacy_roi_align)
        return self.roi_head.mask_head(roi_feats).sigmoid()


def pad_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                   masks: torch.Tensor, count: int):
    """Fixed `count` rows: the K real detections first, then zero boxes, score 0, label -1, zero masks.

    `masks` has K+1 rows (the last belongs to the extra empty box). Concatenating `count`
    padding rows and cutting to `count`, and gathering mask rows by an index computed from the
    labels, keep the exported shapes static for any K, including 0.
    """
    dets = torch.cat([boxes, scores[:, None]], dim=1)
    dets = torch.cat([dets, dets.new_zeros(count, 5)])[:count].reshape(count, 5)
    labels = torch.cat([labels, labels.new_full((count,), PADDED_LABEL)])[:count].reshape(count)
    valid = labels != PADDED_LABEL
    rows = torch.arange(count, dtype=torch.int64)
    mask_rows = torch.where(valid, rows, valid.to(torch.int64).sum())  # padding -> the extra row
    masks = masks[mask_rows] * valid.to(masks.dtype)[:, None, None, None]
    return dets, labels, masks.reshape(count, NUM_CLASSES, MASK_SIZE, MASK_SIZE)


def check_input_shape(image: torch.Tensor, input_hw: tuple[int, int] | None) -> None:
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise UserError(f"input must be [1, 3, H, W], got {list(image.shape)}")
    height, width = int(image.shape[2]), int(image.shape[3])
    if height % SIZE_DIVISOR or width % SIZE_DIVISOR:
        raise UserError(f"input height and width must be multiples of {SIZE_DIVISOR}, got {height}x{width}")
    if input_hw is not None and (height, width) != tuple(input_hw):
        raise UserError(f"model was built for {input_hw[0]}x{input_hw[1]} input, got {height}x{width}")


# ---- building and loading --------------------------------------------------------------------

def build_model(input_hw=None, labels_int32: bool = False, legacy_roi_align: bool = False) -> MaskRCNN:
    """`input_hw` (optional) pins the input size the exported graph was traced at;
    `labels_int32` mirrors a graph edited by label_to_int32.py (recorded in its metadata);
    `legacy_roi_align` is the opset-11 RoIAlign form (see multi_level_roi_align)."""
    if input_hw is not None:
        height, width = (int(v) for v in input_hw)
        if height <= 0 or width <= 0 or height % SIZE_DIVISOR or width % SIZE_DIVISOR:
            raise UserError(f"input size must be positive multiples of {SIZE_DIVISOR}, got {height}x{width}")
        input_hw = (height, width)
    return MaskRCNN(input_hw, labels_int32, legacy_roi_align)


CHECKPOINT_LAYOUT = WeightsLayout(manifest=MODEL_NAME, sub_keys=("state_dict",), strip_prefixes=("module.",),
                                  tolerated_missing_suffixes=("num_batches_tracked",))


def load_pretrained(path: str | Path, input_hw=None, labels_int32: bool = False,
                    legacy_roi_align: bool = False) -> MaskRCNN:
    """Strict load of an mmcv-runner checkpoint (`state_dict` under the top level, `meta` ignored).

    Only BatchNorm's `num_batches_tracked` may be absent (files saved by old torch); any
    other missing, extra or wrongly shaped key is a UserError naming it.
    """
    container = read_checkpoint(path, CHECKPOINT_LAYOUT)  # a bad file fails before the build
    model = build_model(input_hw, labels_int32, legacy_roi_align)
    load_container_into(model, container, path, layout=CHECKPOINT_LAYOUT)
    return model.eval()


def write_demo_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """Random "demo weights" in the published file's layout: {'meta': ..., 'state_dict': ...}.

    Plain random values give almost no box above the 0.05 score threshold (81-way softmax of
    near-equal logits is about 1/81), so three final layers are re-scaled to make the demo
    exercise NMS, masks and the metric: RPN and box deltas are shrunk so proposals and
    boxes stay near their anchors, and the class logits are spread (fc_cls weights x4) with a
    raised background bias, so tens of boxes per image pass 0.05 (the demo stays fast). They remain meaningless.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    state = random_state_dict(MODEL_NAME, seed)
    state["rpn_head.rpn_reg.weight"] = state["rpn_head.rpn_reg.weight"] * 0.05
    state["rpn_head.rpn_cls.weight"] = state["rpn_head.rpn_cls.weight"] * 4.0
    state["roi_head.bbox_head.fc_reg.weight"] = state["roi_head.bbox_head.fc_reg.weight"] * 0.1
    fc_cls_weight = state["roi_head.bbox_head.fc_cls.weight"]
    state["roi_head.bbox_head.fc_cls.weight"] = fc_cls_weight * 4.0
    fc_cls_bias = torch.randn(fc_cls_weight.shape[0], generator=generator) * 0.5
    # Background (the last row) raised so that only tens of boxes per image pass 0.05.
    fc_cls_bias[NUM_CLASSES] = 6.0
    state["roi_head.bbox_head.fc_cls.bias"] = fc_cls_bias
    meta = {"mmdet_version": "2.8.0", "CLASSES": tuple(COCO_CLASSES), "epoch": 12,
            "demo_weights": f"random, seed {seed}; not trained"}
    save_torch_checkpoint(path, {"meta": meta, "state_dict": state})
    return Path(path)
