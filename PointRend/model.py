"""PointRend semantic segmentation (SemanticFPN + PointRend, R-101-FPN, Cityscapes), no detectron2.

Read top to bottom: frozen batch norm and the conv-with-norm wrapper, the ResNet-101 body in
detectron2's MSRA layout, the FPN, the coarse semantic head, the point head, the point
sampling and selection used by the subdivision, then the network and what builds and loads it.

Module and attribute names are chosen so that `state_dict()` has exactly the names of the
published `model_final_cf6ac1.pkl` (detectron2 @ 861b50a, model id 202576688): 567 tensors,
listed in `common/weights/manifests/PointRend.keys.json`.

Export: the inference-time subdivision (2 steps of x2 bilinear upsampling, then refining the
8192 most uncertain cells with the point head) is written so that it traces into a static ONNX
graph at opset 11: bilinear point sampling is built from Gather (opset 11 has no GridSample),
the refined logits are written with ScatterElements, and the loop is unrolled.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.weights.checkpoint import WeightsLayout, load_container_into, read_checkpoint
from common.cli import UserError
from common.weights.demo import as_numpy, random_state_dict, save_numpy_pickle
from pointrend.config import (DEFAULT_INPUT_HW, NUM_CLASSES, PIXEL_MEAN_BGR, PIXEL_STD_BGR,  # noqa: F401
                                 SIZE_DIVISIBILITY, check_input_hw)

# POINT_HEAD.SUBDIVISION_STEPS / SUBDIVISION_NUM_POINTS of the Cityscapes config.
SUBDIVISION_STEPS = 2
SUBDIVISION_NUM_POINTS = 8192
CLASS_MAP_DTYPES = {"uint8": torch.uint8, "int32": torch.int32}
CHECKPOINT_AUTHOR = "Detectron2 Model Zoo"
MODEL_NAME = "PointRend"

# ResNet-101: bottleneck blocks per stage res2..res5, bottleneck width, output channels.
RESNET101_STAGES = (("res2", 3, 64, 256), ("res3", 4, 128, 512),
                    ("res4", 23, 256, 1024), ("res5", 3, 512, 2048))
FPN_CHANNELS = 256
COARSE_HEAD_CHANNELS = 128
GROUP_NORM_GROUPS = 32
POINT_HEAD_FC_DIM = 256
POINT_HEAD_NUM_FC = 3


# ---- blocks -------------------------------------------------------------------------------

class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms, all four stored as buffers.

    detectron2's inference path is `F.batch_norm(training=False, eps=1e-5)`; keeping the eps
    (rather than folding to `x * weight + bias`) matters because the stored variances are 1.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


class ConvNorm(nn.Conv2d):
    """Conv2d with its norm as a child named `norm` (detectron2 keys `<conv>.norm.weight`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 norm: nn.Module | None = None, relu: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2, bias=norm is None)
        self.norm = norm
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


class BasicStem(nn.Module):
    """7x7/2 conv + frozen BN + ReLU, then 3x3/2 max-pool: stride 4, 64 channels."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64):
        super().__init__()
        self.conv1 = ConvNorm(in_channels, out_channels, 7, stride=2,
                              norm=FrozenBatchNorm2d(out_channels), relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """MSRA bottleneck: the stride sits on the first 1x1 conv (RESNETS.STRIDE_IN_1X1 = True).

    torchvision (ResNet v1.5) strides the 3x3 conv instead; the weights would load but the
    outputs would differ.
    """

    def __init__(self, in_channels: int, bottleneck_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = ConvNorm(in_channels, out_channels, 1, stride=stride,
                                     norm=FrozenBatchNorm2d(out_channels))
        self.conv1 = ConvNorm(in_channels, bottleneck_channels, 1, stride=stride,
                              norm=FrozenBatchNorm2d(bottleneck_channels), relu=True)
        self.conv2 = ConvNorm(bottleneck_channels, bottleneck_channels, 3,
                              norm=FrozenBatchNorm2d(bottleneck_channels), relu=True)
        self.conv3 = ConvNorm(bottleneck_channels, out_channels, 1,
                              norm=FrozenBatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class ResNet(nn.Module):
    """ResNet-101 body returning res2..res5 (strides 4, 8, 16, 32)."""

    def __init__(self, stages=RESNET101_STAGES):
        super().__init__()
        self.stem = BasicStem()
        self.stage_names = [name for name, *_ in stages]
        in_channels = 64
        for index, (name, num_blocks, bottleneck, out_channels) in enumerate(stages):
            first_stride = 1 if index == 0 else 2  # res2 follows the stem's max-pool
            blocks = []
            for block_index in range(num_blocks):
                blocks.append(BottleneckBlock(in_channels, bottleneck, out_channels,
                                              first_stride if block_index == 0 else 1))
                in_channels = out_channels
            self.add_module(name, nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outputs.append(x)
        return outputs


class FPN(nn.Module):
    """Feature pyramid over res2..res5: lateral 1x1 + output 3x3 convs (with bias, no norm).

    The top-down path upsamples the running sum (not the output conv's result) with nearest x2.
    p6 (max-pool of p5) is not built: nothing downstream reads it and it has no weights.
    """

    def __init__(self, bottom_up: ResNet, in_channels=(256, 512, 1024, 2048),
                 out_channels: int = FPN_CHANNELS):
        super().__init__()
        self.bottom_up = bottom_up
        self.levels = (2, 3, 4, 5)
        for level, channels in zip(self.levels, in_channels):
            self.add_module(f"fpn_lateral{level}", nn.Conv2d(channels, out_channels, 1))
            self.add_module(f"fpn_output{level}", nn.Conv2d(out_channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        bottom_up = dict(zip(self.levels, self.bottom_up(x)))
        top_level = self.levels[-1]
        running = getattr(self, f"fpn_lateral{top_level}")(bottom_up[top_level])
        pyramid = [getattr(self, f"fpn_output{top_level}")(running)]
        for level in reversed(self.levels[:-1]):
            lateral = getattr(self, f"fpn_lateral{level}")(bottom_up[level])
            running = lateral + F.interpolate(running, scale_factor=2.0, mode="nearest")
            pyramid.insert(0, getattr(self, f"fpn_output{level}")(running))
        return pyramid  # p2, p3, p4, p5


class CoarseSemSegHead(nn.Module):
    """detectron2 SemSegFPNHead, used through `layers()` only: logits at stride 4.

    Per level p_L: max(1, log2(stride) - 2) x [3x3 conv (no bias) + GroupNorm(32) + ReLU,
    then bilinear x2 if the level is coarser than stride 4]; the four maps are summed and a
    1x1 predictor gives the logits. The upsample modules occupy Sequential slots, hence conv
    keys at indices 0, 2, 4. The head's own x4 upsampling is not part of PointRend inference.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = FPN_CHANNELS,
                 conv_dims: int = COARSE_HEAD_CHANNELS):
        super().__init__()
        self.level_names = ("p2", "p3", "p4", "p5")
        for level_index, name in enumerate(self.level_names):
            layers = []
            for repeat in range(max(1, level_index)):
                layers.append(ConvNorm(in_channels if repeat == 0 else conv_dims, conv_dims, 3,
                                       norm=nn.GroupNorm(GROUP_NORM_GROUPS, conv_dims), relu=True))
                if level_index > 0:
                    layers.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False))
            self.add_module(name, nn.Sequential(*layers))
        self.predictor = nn.Conv2d(conv_dims, num_classes, 1)

    def forward(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        summed = None
        for name, features in zip(self.level_names, pyramid):
            mapped = getattr(self, name)(features)
            summed = mapped if summed is None else summed + mapped
        return self.predictor(summed)


class StandardPointHead(nn.Module):
    """Per-point MLP as kernel-1 Conv1d layers over [p2 features (256), coarse logits (19)].

    COARSE_PRED_EACH_LAYER is False for this checkpoint: the coarse logits enter fc1 only.
    """

    def __init__(self, fine_channels: int = FPN_CHANNELS, num_classes: int = NUM_CLASSES,
                 fc_dim: int = POINT_HEAD_FC_DIM, num_fc: int = POINT_HEAD_NUM_FC):
        super().__init__()
        in_channels = fine_channels + num_classes
        self.fc_names = [f"fc{i + 1}" for i in range(num_fc)]
        for name in self.fc_names:
            self.add_module(name, nn.Conv1d(in_channels, fc_dim, 1))
            in_channels = fc_dim
        self.predictor = nn.Conv1d(in_channels, num_classes, 1)

    def forward(self, fine_features: torch.Tensor, coarse_features: torch.Tensor) -> torch.Tensor:
        x = torch.cat((fine_features, coarse_features), dim=1)
        for name in self.fc_names:
            x = F.relu(getattr(self, name)(x))
        return self.predictor(x)


# ---- point selection and sampling ---------------------------------------------------------

def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Second-best minus best logit per pixel (<= 0; the largest values are the least sure)."""
    top2 = torch.topk(logits, k=2, dim=1).values
    return top2[:, 1] - top2[:, 0]


def select_uncertain_cells(uncertainty_map: torch.Tensor, num_points: int) -> torch.Tensor:
    """Flat indices (row * W + col) of the `num_points` largest values, N x K, int64.

    Ties are broken towards the lower flat index, in both paths, so PyTorch and ONNX Runtime
    refine the same cells: ONNX TopK (opset 11) defines that order for equal values, while
    torch.topk on CPU leaves it unspecified, so the eager path uses a stable descending sort,
    which yields the same indices in the same order. The tracer records TopK.
    """
    flat = uncertainty_map.flatten(1)
    num_points = min(int(flat.shape[1]), num_points)
    if torch.jit.is_tracing():
        return torch.topk(flat, k=num_points, dim=1).indices
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    return order[:, :num_points]


def sample_points(flat_features: torch.Tensor, feature_hw: tuple[int, int], rows: torch.Tensor,
                  cols: torch.Tensor, grid_scale: float) -> torch.Tensor:
    """Bilinear samples of a feature map at the centres of cells of a finer grid; N x C x K.

    Equals `grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)` at the
    normalised cell centres detectron2 uses, but is built from Gather so that it exports at
    opset 11. `flat_features` is the map as (N*h*w) x C rows (see `flatten_for_sampling`);
    `rows`/`cols` (N x K) index a grid `1/grid_scale` times finer than the map, so the sample
    position in map pixels is (index + 0.5) * grid_scale - 0.5, exact in float32 because
    grid_scale is a power of two. Corners outside the map contribute zero (zero padding).
    """
    height, width = feature_hw
    batch = rows.shape[0]
    y = (rows.to(torch.float32) + 0.5) * grid_scale - 0.5
    x = (cols.to(torch.float32) + 0.5) * grid_scale - 0.5
    y0 = torch.floor(y)
    x0 = torch.floor(x)
    wy1 = y - y0
    wx1 = x - x0
    batch_offset = (torch.arange(batch, device=rows.device) * (height * width)).unsqueeze(1)
    total = None
    for dy, weight_y in ((0.0, 1.0 - wy1), (1.0, wy1)):
        for dx, weight_x in ((0.0, 1.0 - wx1), (1.0, wx1)):
            corner_y = y0 + dy
            corner_x = x0 + dx
            inside = ((corner_y >= 0) & (corner_y <= height - 1)
                      & (corner_x >= 0) & (corner_x <= width - 1))
            weight = weight_y * weight_x * inside.to(torch.float32)
            # Clamp in float: opset 11 Clip has no integer version; the weight is 0 there anyway.
            safe_y = corner_y.clamp(0, height - 1).to(torch.int64)
            safe_x = corner_x.clamp(0, width - 1).to(torch.int64)
            flat_index = safe_y * width + safe_x + batch_offset
            values = flat_features[flat_index.flatten()].reshape(batch, -1, flat_features.shape[1])
            contribution = values * weight.unsqueeze(2)
            total = contribution if total is None else total + contribution
    return total.permute(0, 2, 1)


def flatten_for_sampling(features: torch.Tensor) -> torch.Tensor:
    """N x C x h x w -> (N*h*w) x C, so a point's features are one contiguous row to gather."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


# ---- network ------------------------------------------------------------------------------

class PointRendHead(nn.Module):
    """PointRendSemSegHead at inference: coarse logits, then subdivision steps."""

    def __init__(self, num_classes: int = NUM_CLASSES, subdivision_steps: int = SUBDIVISION_STEPS,
                 subdivision_num_points: int = SUBDIVISION_NUM_POINTS):
        super().__init__()
        self.coarse_sem_seg_head = CoarseSemSegHead(num_classes)
        self.point_head = StandardPointHead(num_classes=num_classes)
        self.subdivision_steps = subdivision_steps
        self.subdivision_num_points = subdivision_num_points

    def forward(self, pyramid: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits at input resolution, and the refined flat indices of each step."""
        coarse_logits = self.coarse_sem_seg_head(pyramid)
        fine_map = pyramid[0]  # POINT_HEAD.IN_FEATURES = [p2]
        feature_hw = (int(coarse_logits.shape[2]), int(coarse_logits.shape[3]))
        # Both samplers read the stride-4 maps in every step (never the refined logits).
        flat_fine = flatten_for_sampling(fine_map)
        flat_coarse = flatten_for_sampling(coarse_logits)
        logits = coarse_logits
        chosen_per_step = []
        for step in range(1, self.subdivision_steps + 1):
            logits = F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)
            logits, chosen = self._refine(logits, flat_fine, flat_coarse, feature_hw, 0.5 ** step)
            chosen_per_step.append(chosen)
        return logits, chosen_per_step

    def _refine(self, logits, flat_fine, flat_coarse, feature_hw, grid_scale):
        num_classes, height, width = (int(d) for d in logits.shape[1:])
        chosen = select_uncertain_cells(uncertainty(logits), self.subdivision_num_points)
        rows = torch.div(chosen, width, rounding_mode="trunc")  # indices are >= 0: plain Div
        cols = chosen - rows * width
        fine = sample_points(flat_fine, feature_hw, rows, cols, grid_scale)
        coarse = sample_points(flat_coarse, feature_hw, rows, cols, grid_scale)
        point_logits = self.point_head(fine, coarse)
        scatter_index = chosen.unsqueeze(1).expand(-1, num_classes, -1)
        # The point predictions replace the upsampled logits at the chosen cells.
        refined = logits.flatten(2).scatter(2, scatter_index, point_logits)
        return refined.reshape(-1, num_classes, height, width), chosen


class PointRendSemSeg(nn.Module):
    """Normalised BGR images N x 3 x H x W -> logits N x 19 x H x W (or a class map).

    `class_map_dtype` ("uint8"/"int32") appends argmax over the classes in the graph: the
    output becomes N x H x W class ids (first maximum on ties, as torch.argmax and ONNX ArgMax),
    1/76 (uint8) or 4/76 (int32) of the float output's size.
    `return_point_indices` adds each step's refined flat indices as extra outputs (N x K int64),
    for checking that a backend refines the same cells as PyTorch.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, subdivision_steps: int = SUBDIVISION_STEPS,
                 subdivision_num_points: int = SUBDIVISION_NUM_POINTS,
                 class_map_dtype: str | None = None, return_point_indices: bool = False,
                 input_hw: tuple[int, int] | list[int] | None = None):
        super().__init__()
        if class_map_dtype is not None and class_map_dtype not in CLASS_MAP_DTYPES:
            raise UserError(f"class_map_dtype must be one of {sorted(CLASS_MAP_DTYPES)} or None, "
                            f"got {class_map_dtype!r}")
        if input_hw is not None:
            check_input_hw(input_hw)
        self.backbone = FPN(ResNet())
        self.sem_seg_head = PointRendHead(num_classes, subdivision_steps, subdivision_num_points)
        self.class_map_dtype = class_map_dtype
        self.return_point_indices = return_point_indices
        self.input_hw = None if input_hw is None else tuple(int(v) for v in input_hw)

    def forward(self, images: torch.Tensor):
        if not torch.jit.is_tracing():
            self._check_input(images)
        logits, chosen_per_step = self.sem_seg_head(self.backbone(images))
        output = logits
        if self.class_map_dtype is not None:
            output = torch.argmax(logits, dim=1).to(CLASS_MAP_DTYPES[self.class_map_dtype])
        if self.return_point_indices:
            return (output, *chosen_per_step)
        return output

    def _check_input(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise UserError(f"expected images N x 3 x H x W, got {tuple(images.shape)}")
        height, width = int(images.shape[2]), int(images.shape[3])
        check_input_hw((height, width))
        if self.input_hw is not None and (height, width) != self.input_hw:
            raise UserError(f"model built for input {self.input_hw}, got {(height, width)}")


def output_spec(input_hw, class_map_dtype: str | None = None, num_classes: int = NUM_CLASSES):
    """(shape without batch, numpy dtype name) of output 0 for an input size."""
    height, width = check_input_hw(input_hw)
    if class_map_dtype is None:
        return (num_classes, height, width), "float32"
    return (height, width), class_map_dtype


# ---- build and load -----------------------------------------------------------------------

def build_model(num_classes: int = NUM_CLASSES, subdivision_steps: int = SUBDIVISION_STEPS,
                subdivision_num_points: int = SUBDIVISION_NUM_POINTS,
                class_map_dtype: str | None = None, return_point_indices: bool = False,
                input_hw=None) -> PointRendSemSeg:
    """The network with default (untrained) weights, in eval mode."""
    return PointRendSemSeg(num_classes, subdivision_steps, subdivision_num_points,
                           class_map_dtype, return_point_indices, input_hw).eval()


CHECKPOINT_LAYOUT = WeightsLayout(manifest=MODEL_NAME, sub_keys=("model",),
                                  drop_keys=("pixel_mean", "pixel_std"))


def load_pretrained(path: str | Path, **options) -> PointRendSemSeg:
    """Build the network and load `model_final_cf6ac1.pkl` (or a file of its format) strictly."""
    container = read_checkpoint(path, CHECKPOINT_LAYOUT)
    if isinstance(container, dict) and isinstance(container.get("model"), dict):
        _check_pixel_stats(container["model"], path)
    model = _build_uninitialised(**options)
    load_container_into(model, container, path, layout=CHECKPOINT_LAYOUT)
    return model.eval()


def _build_uninitialised(**options) -> PointRendSemSeg:
    """The network with uninitialised storage: a strict load overwrites every tensor, so the
    47M-parameter random init (seconds on a busy CPU) would be wasted."""
    with torch.device("meta"):
        network = PointRendSemSeg(**options)
    return network.to_empty(device="cpu")


def _check_pixel_stats(tensors: dict, path) -> None:
    """Files saved by 2020 detectron2 also hold pixel_mean/std; they must match preprocessing."""
    import numpy as np

    for key, expected in (("pixel_mean", PIXEL_MEAN_BGR), ("pixel_std", PIXEL_STD_BGR)):
        if key in tensors:
            values = np.asarray(tensors[key], dtype=np.float64).reshape(-1)
            if values.shape != (3,) or not np.allclose(values, expected, atol=1e-3):
                raise UserError(f"{path}: {key} is {values.tolist()}, the preprocessing uses "
                                f"{list(expected)} (BGR)")


def write_demo_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """Random weights in the published file's format: pickle {'model': {name: ndarray}, ...}."""
    path = Path(path)
    container = {"model": dict(as_numpy(random_state_dict(MODEL_NAME, seed))),
                 "__author__": CHECKPOINT_AUTHOR}
    save_numpy_pickle(path, container)
    return path
