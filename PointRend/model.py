"""PointRend semantic segmentation (SemanticFPN + PointRend, R-101-FPN, Cityscapes), no detectron2.

Read top to bottom: frozen batch norm and the conv-with-norm wrapper, the ResNet-101 body in
detectron2's MSRA layout, the FPN, the coarse semantic head, the point head, the point
sampling and selection used by the subdivision, then the network and what builds and loads it.

Module and attribute names are chosen so that `state_dict()` has exactly the names of the
published `model_final_cf6ac1.pkl` (detectron2 @ 861b50a, model id 202576688): 567 tensors,
listed in `common/weights/manifests/PointRend.keys.json`.

Export: the inference-time subdivision (2 steps of x2 bilinear upsampling, then refining the
8192 most uncertain cells with the point head) is written so that it traces into a static ONNX
graph at opset 11: bilinear point sampling is built from Gather (opset 11 has no GridSample)
with grid_sample's float32 arithmetic, fused multiply-adds included (`gather_sample_points`),
the refined logits are written with ScatterElements, and the loop is unrolled. In eager mode
the sampler is `F.grid_sample` itself, as in detectron2.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.weights.checkpoint import WeightsLayout, load_container_into, read_checkpoint
from common.cli import UserError
from common.weights.demo import as_numpy, random_state_dict, save_numpy_pickle
from pointrend.config import (PACK, DEFAULT_INPUT_HW, NUM_CLASSES, PIXEL_MEAN_BGR, PIXEL_STD_BGR,  # noqa: F401
                                 SIZE_DIVISIBILITY, check_input_hw)

# POINT_HEAD.SUBDIVISION_STEPS / SUBDIVISION_NUM_POINTS of the Cityscapes config.
SUBDIVISION_STEPS = 2
SUBDIVISION_NUM_POINTS = 8192
CLASS_MAP_DTYPES = {"uint8": torch.uint8, "int32": torch.int32}
# Arithmetic of the exported point sampler (eager mode always calls F.grid_sample).
POINT_SAMPLER_ARITHMETIC = ("exact", "float32")
CHECKPOINT_AUTHOR = "Detectron2 Model Zoo"
MODEL_NAME = PACK.manifest  # the manifest's and the metadata's name

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


def cell_centre_grid(chosen: torch.Tensor, grid_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """grid_sample coordinates (x, y in [-1, 1]) of the centres of flat cells of an H x W grid, N x K each.

    The float32 steps of detectron2's `get_uncertain_point_coords_on_grid` and `point_sample`:
    `w_step / 2 + col * w_step`, then `2 * c - 1`, with w_step = 1 / W taken as float32 (as
    torch takes a Python scalar in a float32 op). Exact when W is a power of two; otherwise
    each step rounds, and the rounding is detectron2's.
    """
    height, width = grid_hw
    rows = torch.div(chosen, width, rounding_mode="trunc")  # indices are >= 0: plain Div
    cols = chosen - rows * width
    return _centre_coordinate(cols, width), _centre_coordinate(rows, height)


def _centre_coordinate(index: torch.Tensor, size: int) -> torch.Tensor:
    step = torch.full((), 1.0 / size, dtype=torch.float32)
    half_step = torch.full((), 0.5 / size, dtype=torch.float32)
    unit = half_step + index.to(torch.float32) * step
    return unit * 2.0 - 1.0


def fused_multiply_add(a: torch.Tensor, b: torch.Tensor | float, c: torch.Tensor | float) -> torch.Tensor:
    """float32 `a * b + c` rounded once, as the FMA instruction torch's AVX2/AVX-512 kernels use.

    Built from float64 Mul/Add/Cast (opset 11 has no FMA); see `_round_sum_to_float32`.
    """
    product = _as_float64(a) * _as_float64(b)  # exact: 24 + 24 significant bits
    return _round_sum_to_float32(product, _as_float64(c)).to(torch.float32)


def _as_float64(value) -> torch.Tensor:
    """A float32 tensor, or a Python number taken as float32 (as torch's kernels take scalars), in float64."""
    if not isinstance(value, torch.Tensor):
        value = torch.full((), value, dtype=torch.float32)
    return value.to(torch.float64)


def _round_sum_to_float32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The exact sum of two float64 tensors rounded once to float32 (held in float64, exactly).

    The float64 sum rounds once, and rounding that to float32 is right except when it lands
    exactly halfway between two float32 numbers while the exact sum does not (double
    rounding). TwoSum gives the float64 rounding error exactly; when it points away from the
    float32 number that the halfway value was rounded to (ties to even), the exact sum lies
    on the other side and rounds to the other neighbour, which is the halfway value's mirror
    image. Every step is exact or correctly rounded: the result is the correctly rounded
    float32 sum, bit for bit, for finite sums that do not overflow float32.
    """
    total = a + b
    b_part = total - a  # TwoSum (Knuth): error = (a + b) - total, exactly
    error = (a - (total - b_part)) + (b - b_part)
    nearest = total.to(torch.float32).to(torch.float64)
    offset = total - nearest  # exact (the two are within one float32 step)
    mirror = total + offset  # exact: the float32 neighbour on the other side if total is halfway
    halfway = mirror.to(torch.float32).to(torch.float64) == mirror
    # Same sign: the product cannot underflow (|error| >= 2^-298 for float32 inputs).
    return torch.where(halfway & (error * offset > 0), mirror, nearest)


def gather_sample_points(flat_features: torch.Tensor, feature_hw: tuple[int, int], grid_x: torch.Tensor,
                         grid_y: torch.Tensor, exact: bool = True) -> torch.Tensor:
    """`grid_sample(bilinear, zeros, align_corners=False)` at N x K points, bit for bit; N x C x K.

    Built from Gather so that it exports at opset 11 (no GridSample). `flat_features` is the
    map as (N*h*w) x C rows plus one zero row (see `flatten_for_sampling`); `grid_x`/`grid_y`
    (N x K) are grid_sample's normalised coordinates. The float32 steps are those of ATen's
    vectorised CPU kernel (GridSamplerKernel.cpp, `ApplyGridSample` bilinear), which the
    compiler builds with fused multiply-adds on AVX2/AVX-512: x = fma(gx + 1, w / 2, -0.5);
    floor; distances to the four sides; corner weights as products of two distances; corners
    outside the map read +0 (the zero row); then v_nw * nw, + v_ne * ne, + v_sw * sw,
    + v_se * se, each addition an FMA. The FMAs are emulated exactly in float64 (products of
    float32 numbers are exact there, each sum is rounded to float32 once, see
    `_round_sum_to_float32`); everything else is the same float32 operation.

    `exact=False` does the multiply-adds as separate float32 Mul and Add (no float64 in the
    graph, for converters without it, and about 10x less work at 8192 x 256 values): each
    then rounds twice, so about 30 % of the values differ from grid_sample's, by 1-2 ulp where
    the sample position is exact in float32 (power-of-two grids), else also by the map's slope
    times the position's last bit.
    """
    height, width = feature_hw
    batch, channels = grid_x.shape[0], flat_features.shape[1]
    zero_row = flat_features.shape[0] - 1
    multiply_add = fused_multiply_add if exact else _float32_multiply_add
    x = multiply_add(grid_x + 1.0, width / 2, -0.5)
    y = multiply_add(grid_y + 1.0, height / 2, -0.5)
    x_west, y_north = torch.floor(x), torch.floor(y)
    to_west, to_north = x - x_west, y - y_north
    to_east, to_south = 1.0 - to_west, 1.0 - to_north
    corners = ((0.0, 0.0, to_south * to_east), (0.0, 1.0, to_south * to_west),
               (1.0, 0.0, to_north * to_east), (1.0, 1.0, to_north * to_west))  # nw, ne, sw, se
    batch_offset = (torch.arange(batch, device=grid_x.device) * (height * width)).unsqueeze(1)
    total = None
    for dy, dx, weight in corners:
        corner_y, corner_x = y_north + dy, x_west + dx
        inside = ((corner_y >= 0) & (corner_y <= height - 1)
                  & (corner_x >= 0) & (corner_x <= width - 1))
        # Clamp in float: opset 11 Clip has no integer version; outside corners read the zero row.
        safe_y = corner_y.clamp(0, height - 1).to(torch.int64)
        safe_x = corner_x.clamp(0, width - 1).to(torch.int64)
        flat_index = torch.where(inside, safe_y * width + safe_x + batch_offset,
                                 torch.full_like(batch_offset, zero_row))
        values = flat_features[flat_index.flatten()].reshape(batch, -1, channels)
        if not exact:
            product = values * weight.unsqueeze(2)
            total = product if total is None else total + product
            continue
        product = values.to(torch.float64) * weight.to(torch.float64).unsqueeze(2)
        if total is None:  # the float32 product rounds once, as the kernel's multiply
            total = product.to(torch.float32).to(torch.float64)
        else:
            total = _round_sum_to_float32(product, total)
    return total.to(torch.float32).permute(0, 2, 1)


def _float32_multiply_add(a: torch.Tensor, b: float, c: float) -> torch.Tensor:
    return a * b + c


def flatten_for_sampling(features: torch.Tensor) -> torch.Tensor:
    """N x C x h x w -> (N*h*w + 1) x C: a point's features are one contiguous row to gather,
    and the last row is zeros, read for corners outside the map (grid_sample's zero padding)."""
    rows = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    return torch.cat([rows, rows.new_zeros(1, rows.shape[1])])


class PointSampler:
    """Bilinear samples of one N x C x h x w map at grid_sample coordinates, N x C x K.

    Eager: `F.grid_sample` itself (what detectron2's `point_sample` calls). Traced for export:
    `gather_sample_points` on the flattened map, which with `arithmetic="exact"` equals it bit
    for bit on CPUs where torch's kernel uses FMA (AVX2, AVX-512; tests/packs/test_pointrend_model.py
    checks both paths); "float32" is the cheaper graph without float64 (see there).
    """

    def __init__(self, features: torch.Tensor, arithmetic: str = "exact"):
        self.features = features
        self.feature_hw = (int(features.shape[2]), int(features.shape[3]))
        self.flat = flatten_for_sampling(features) if torch.jit.is_tracing() else None
        self.exact = arithmetic == "exact"

    def __call__(self, grid_x: torch.Tensor, grid_y: torch.Tensor) -> torch.Tensor:
        if self.flat is not None:
            return gather_sample_points(self.flat, self.feature_hw, grid_x, grid_y, self.exact)
        grid = torch.stack([grid_x, grid_y], dim=-1).unsqueeze(2)
        return F.grid_sample(self.features, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False).squeeze(3)


# ---- network ------------------------------------------------------------------------------

class PointRendHead(nn.Module):
    """PointRendSemSegHead at inference: coarse logits, then subdivision steps."""

    def __init__(self, num_classes: int = NUM_CLASSES, subdivision_steps: int = SUBDIVISION_STEPS,
                 subdivision_num_points: int = SUBDIVISION_NUM_POINTS, point_sampler: str = "exact"):
        super().__init__()
        self.coarse_sem_seg_head = CoarseSemSegHead(num_classes)
        self.point_head = StandardPointHead(num_classes=num_classes)
        self.subdivision_steps = subdivision_steps
        self.subdivision_num_points = subdivision_num_points
        self.point_sampler = point_sampler

    def forward(self, pyramid: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits at input resolution, and the refined flat indices of each step."""
        coarse_logits = self.coarse_sem_seg_head(pyramid)
        # Both samplers read the stride-4 maps in every step (never the refined logits).
        fine_sampler = PointSampler(pyramid[0], self.point_sampler)  # POINT_HEAD.IN_FEATURES = [p2]
        coarse_sampler = PointSampler(coarse_logits, self.point_sampler)
        logits = coarse_logits
        chosen_per_step = []
        for _ in range(self.subdivision_steps):
            logits = F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)
            logits, chosen = self._refine(logits, fine_sampler, coarse_sampler)
            chosen_per_step.append(chosen)
        return logits, chosen_per_step

    def _refine(self, logits, fine_sampler, coarse_sampler):
        num_classes, height, width = (int(d) for d in logits.shape[1:])
        chosen = select_uncertain_cells(uncertainty(logits), self.subdivision_num_points)
        grid_x, grid_y = cell_centre_grid(chosen, (height, width))
        fine = fine_sampler(grid_x, grid_y)
        coarse = coarse_sampler(grid_x, grid_y)
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
    `point_sampler` is the exported sampler's arithmetic (see `gather_sample_points`).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, subdivision_steps: int = SUBDIVISION_STEPS,
                 subdivision_num_points: int = SUBDIVISION_NUM_POINTS,
                 class_map_dtype: str | None = None, return_point_indices: bool = False,
                 input_hw: tuple[int, int] | list[int] | None = None, point_sampler: str = "exact"):
        super().__init__()
        if class_map_dtype is not None and class_map_dtype not in CLASS_MAP_DTYPES:
            raise UserError(f"class_map_dtype must be one of {sorted(CLASS_MAP_DTYPES)} or None, "
                            f"got {class_map_dtype!r}")
        if point_sampler not in POINT_SAMPLER_ARITHMETIC:
            raise UserError(f"point_sampler must be one of {list(POINT_SAMPLER_ARITHMETIC)}, "
                            f"got {point_sampler!r}")
        if input_hw is not None:
            check_input_hw(input_hw)
        self.backbone = FPN(ResNet())
        self.sem_seg_head = PointRendHead(num_classes, subdivision_steps, subdivision_num_points,
                                          point_sampler)
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
                input_hw=None, point_sampler: str = "exact") -> PointRendSemSeg:
    """The network with default (untrained) weights, in eval mode."""
    return PointRendSemSeg(num_classes, subdivision_steps, subdivision_num_points,
                           class_map_dtype, return_point_indices, input_hw, point_sampler).eval()


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
