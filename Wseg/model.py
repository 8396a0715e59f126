"""Single-stage weakly supervised segmentation (Araslanov & Roth, CVPR 2020), test-time network.

WideResNet38 ("ResNet38d") backbone, ASPP, the deep/shallow decoder with Global Cue Injection,
the deterministic stochastic gate and the softmax head with normalised global weighted pooling.
Module attribute names reproduce the state-dict keys of the published
`model_enc_e020Xs0.928.pth` (a bare state_dict, see common/weights/manifests/Wseg.keys.json), so that
file loads strictly, key for key. Dropout layers (identity at test time) keep their indices in
`last_conv` so the keys after them do not shift.

forward(image [B,3,H,W]) -> (cls [B,20] raw scores, mask [B,21,H,W] probabilities).
With `lean_mask=True` the mask is returned at its native 1/4 resolution, before the final
align_corners=True upsample; `upsample_mask` below performs that upsample in the postprocess.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.weights.checkpoint import WeightsLayout, load_container_into, read_checkpoint
from common.weights.demo import random_state_dict, save_torch_checkpoint
from wseg.config import PACK, NUM_CLASSES
SG_PSI = 0.3  # config SG_PSI: test-time mix of shallow features into deep ones
FOCAL_P = 3  # config FOCAL_P
FOCAL_LAMBDA = 0.01  # config FOCAL_LAMBDA
BACKGROUND_LOGIT = 1.0  # constant background score prepended to the 20 class logits
# Buffers that checkpoints written by torch < 0.4.1 lack; absent, they change nothing at eval.
TOLERATED_MISSING = ("num_batches_tracked",)


# ---- backbone blocks ------------------------------------------------------------------------

class ResBlock(nn.Module):
    """Pre-activation residual block: two 3x3 convs; 1x1 projection when the shape changes."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int = 1,
                 first_dilation: int | None = None, dilation: int = 1):
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        self.same_shape = in_channels == out_channels and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, mid_channels, 3, stride, padding=first_dilation,
                                       dilation=first_dilation, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid_channels)
        self.conv_branch2b1 = nn.Conv2d(mid_channels, out_channels, 3, padding=dilation,
                                        dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn_branch2a(x))
        # The identity shortcut takes the raw input, the projection the activated one.
        shortcut = x if self.same_shape else self.conv_branch1(activated)
        branch = self.conv_branch2a(activated)
        branch = self.conv_branch2b1(F.relu(self.bn_branch2b1(branch)))
        return shortcut + branch


class ResBlockBottleneck(nn.Module):
    """Pre-activation bottleneck block (upstream `ResBlock_bot`); its Dropout2d is identity here."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, out_channels // 4, 1, stride, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(out_channels // 4)
        self.conv_branch2b1 = nn.Conv2d(out_channels // 4, out_channels // 2, 3, padding=dilation,
                                        dilation=dilation, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(out_channels // 2)
        self.conv_branch2b2 = nn.Conv2d(out_channels // 2, out_channels, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn_branch2a(x))
        shortcut = self.conv_branch1(activated)
        branch = self.conv_branch2a(activated)
        branch = self.conv_branch2b1(F.relu(self.bn_branch2b1(branch)))
        branch = self.conv_branch2b2(F.relu(self.bn_branch2b2(branch)))
        return shortcut + branch


# ---- head blocks ----------------------------------------------------------------------------

def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                      bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU()]


class AsppBranch(nn.Module):
    def __init__(self, in_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        padding = 0 if kernel_size == 1 else dilation
        self.atrous_conv = nn.Conv2d(in_channels, 256, kernel_size, padding=padding,
                                     dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.atrous_conv(x)))


class Aspp(nn.Module):
    """ASPP for output stride 8: dilations 1, 12, 24, 36 plus an image-level branch."""

    def __init__(self, in_channels: int = 4096):
        super().__init__()
        self.aspp1 = AsppBranch(in_channels, 1, 1)
        self.aspp2 = AsppBranch(in_channels, 3, 12)
        self.aspp3 = AsppBranch(in_channels, 3, 24)
        self.aspp4 = AsppBranch(in_channels, 3, 36)
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)),
                                             *conv_bn_relu(in_channels, 256, 1))
        self.conv1 = nn.Conv2d(1280, 256, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x)]
        # Upstream resizes the 1x1 pooled map bilinearly with align_corners=True, which copies
        # the single value everywhere: a broadcast gives the same numbers without a Resize node.
        pooled = self.global_avg_pool(x)
        branches.append(pooled.expand(-1, -1, x.shape[2], x.shape[3]))
        # Dropout(0.5) follows at train time.
        return F.relu(self.bn1(self.conv1(torch.cat(branches, 1))))


class GlobalCueInjection(nn.Module):
    """GCI (`shallow_mask`): per-image scale/shift of shallow features from max-pooled deep ones."""

    def __init__(self):
        super().__init__()
        self.fc_deep = nn.Sequential(*conv_bn_relu(256, 512, 1))
        self.fc_skip = nn.Sequential(nn.Conv2d(256, 256, 1, bias=False),
                                     nn.BatchNorm2d(256, affine=False))
        self.fc_cls = nn.Sequential(*conv_bn_relu(256, 256, 1))

    def forward(self, shallow: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        attributes = self.fc_deep(deep).flatten(2).amax(-1)  # [B, 512]
        channels = shallow.shape[1]
        gamma = attributes[:, :channels, None, None]
        beta = attributes[:, channels:, None, None]
        skip = self.fc_skip(shallow)
        return self.fc_cls(F.relu(skip * (gamma + 1) + beta))


class ShiftKernel(nn.Module):
    """One constant 3x3 kernel bank of the mask-refinement module (PAMR), stored as `kernel`."""

    def __init__(self, kernel: torch.Tensor):
        super().__init__()
        self.register_buffer("kernel", kernel)


# Neighbour positions of a 3x3 window without its centre, in upstream order (row, column).
NEIGHBOURS_3X3 = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2))


def pamr_kernels() -> dict[str, torch.Tensor]:
    """The three fixed PAMR kernels: centre-minus-neighbour, neighbour copy, full-window copy."""
    difference = torch.zeros(8, 1, 3, 3)
    copy = torch.zeros(8, 1, 3, 3)
    for index, (row, col) in enumerate(NEIGHBOURS_3X3):
        difference[index, 0, 1, 1] = 1.0
        difference[index, 0, row, col] = -1.0
        copy[index, 0, row, col] = 1.0
    window = torch.eye(9).reshape(9, 1, 3, 3)  # one-hot over the 3x3 window, row-major
    return {"aff_x": difference, "aff_m": copy, "aff_std": window}


class PamrBuffers(nn.Module):
    """PAMR (`_aff`) refines masks into pseudo labels at training time only; inference never
    runs it, but the published checkpoint stores its three kernels, so they are kept here."""

    def __init__(self):
        super().__init__()
        for name, kernel in pamr_kernels().items():
            setattr(self, name, ShiftKernel(kernel))


# ---- network --------------------------------------------------------------------------------

class WsegNet(nn.Module):
    """Upstream `SoftMaxAE` on the ResNet38 backbone, test-mode forward only."""

    def __init__(self, lean_mask: bool = False):
        super().__init__()
        self.lean_mask = bool(lean_mask)
        self.conv1a = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.b2 = ResBlock(64, 128, 128, stride=2)
        self.b2_1 = ResBlock(128, 128, 128)
        self.b2_2 = ResBlock(128, 128, 128)
        self.b3 = ResBlock(128, 256, 256, stride=2)
        self.b3_1 = ResBlock(256, 256, 256)
        self.b3_2 = ResBlock(256, 256, 256)
        self.b4 = ResBlock(256, 512, 512, stride=2)
        for index in range(1, 6):
            setattr(self, f"b4_{index}", ResBlock(512, 512, 512))
        self.b5 = ResBlock(512, 512, 1024, first_dilation=1, dilation=2)
        self.b5_1 = ResBlock(1024, 512, 1024, dilation=2)
        self.b5_2 = ResBlock(1024, 512, 1024, dilation=2)
        self.b6 = ResBlockBottleneck(1024, 2048, dilation=4)
        self.b7 = ResBlockBottleneck(2048, 4096, dilation=4)
        self.bn7 = nn.BatchNorm2d(4096)
        self.aspp = Aspp(4096)
        self._aff = PamrBuffers()
        self.shallow_mask = GlobalCueInjection()
        self.fc8_skip = nn.Sequential(*conv_bn_relu(256, 48, 1))
        self.fc8_x = nn.Sequential(*conv_bn_relu(304, 256, 3, padding=1))
        # Indices 3 and 7 are Dropout(0.5) / Dropout(0.1) at train time.
        self.last_conv = nn.Sequential(*conv_bn_relu(256, 256, 3, padding=1), nn.Identity(),
                                       *conv_bn_relu(256, 256, 3, padding=1), nn.Identity(),
                                       nn.Conv2d(256, NUM_CLASSES - 1, 1))

    def backbone(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(conv3: stride-4 features, 256 ch; conv6: stride-8 features, 4096 ch)."""
        x = self.conv1a(image)
        for name in ("b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2"):
            x = getattr(self, name)(x)
        conv3 = x
        for name in ("b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5", "b5", "b5_1", "b5_2", "b6", "b7"):
            x = getattr(self, name)(x)
        return conv3, F.relu(self.bn7(x))

    def class_logits(self, image: torch.Tensor) -> torch.Tensor:
        """21-channel scores at 1/4 resolution: constant background, then the 20 classes."""
        conv3, conv6 = self.backbone(image)
        context = self.aspp(conv6)
        skip = self.fc8_skip(conv3)
        context = F.interpolate(context, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        deep = self.fc8_x(torch.cat([context, skip], 1))
        shallow = self.shallow_mask(conv3, deep)
        mixed = (1 - SG_PSI) * deep + SG_PSI * shallow  # stochastic gate, deterministic at test
        foreground = self.last_conv(mixed)
        background = torch.full_like(foreground[:, :1], BACKGROUND_LOGIT)
        return torch.cat([background, foreground], 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.class_logits(image)
        masks = F.softmax(logits, dim=1)
        cls = class_scores(logits, masks)
        if not self.lean_mask:
            masks = upsample_mask(masks, image.shape[-2:])
        return cls, masks


def class_scores(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Normalised global weighted pooling plus the focal mask penalty, foreground only [B,20]."""
    logits = logits.flatten(2)
    masks = masks.flatten(2)
    pooled = (logits * masks).sum(-1) / (1.0 + masks.sum(-1))
    mean_mask = masks.mean(-1)
    penalty = torch.pow(1 - mean_mask, FOCAL_P) * torch.log(FOCAL_LAMBDA + mean_mask)
    return (pooled + penalty)[:, 1:]


def upsample_mask(masks: torch.Tensor, size_hw) -> torch.Tensor:
    """The model's final mask upsample (1/4 -> input size), align_corners=True as upstream."""
    return F.interpolate(masks, size=size_hw, mode="bilinear",
                         align_corners=True)


def lean_mask_size(input_size: int) -> int:
    """Side of the 1/4-resolution mask (the lean output) for an input side `input_size`."""
    side = int(input_size)
    for _ in range(2):  # b2 and b3 halve the size with stride-2, padding-1 convs: ceil(n / 2)
        side = (side + 1) // 2
    return side


# ---- building and loading -------------------------------------------------------------------

def build_model(lean_mask: bool = False) -> WsegNet:
    """The network with default (meaningless) initial weights, in eval mode."""
    return WsegNet(lean_mask=lean_mask).eval()


def _build_uninitialised(lean_mask: bool = False) -> WsegNet:
    # Random init of 138M parameters takes seconds and every tensor is overwritten by the
    # checkpoint, so build on the meta device and allocate empty storage instead.
    with torch.device("meta"):
        model = WsegNet(lean_mask=lean_mask)
    model = model.to_empty(device="cpu")
    for name, kernel in pamr_kernels().items():
        getattr(model._aff, name).kernel.copy_(kernel)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and module.num_batches_tracked is not None:
            module.num_batches_tracked.zero_()
    return model.eval()


CHECKPOINT_LAYOUT = WeightsLayout(manifest=PACK.manifest, strip_prefixes=("module.",),
                                  tolerated_missing_suffixes=TOLERATED_MISSING)


def load_pretrained(checkpoint: str | Path, lean_mask: bool = False) -> WsegNet:
    """Load `model_enc_e020Xs0.928.pth` (bare state_dict, maybe CUDA-saved) strictly."""
    container = read_checkpoint(checkpoint, CHECKPOINT_LAYOUT)  # a bad file fails before the build
    model = _build_uninitialised(lean_mask=lean_mask)
    load_container_into(model, container, checkpoint, layout=CHECKPOINT_LAYOUT)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


DEMO_LOGIT_SPREAD = 1.5  # spatial std of the demo class logits (background sits at 1.0)
DEMO_CALIBRATION_SIDE = 64
DEMO_BIAS_BELOW_BACKGROUND = 4.0  # most pixels background, a few classes above it
DEMO_BIAS_JITTER = 1.0


def demo_state_dict(seed: int = 0, with_num_batches_tracked: bool = True) -> dict[str, torch.Tensor]:
    """Manifest-built random weights; the PAMR kernels hold their true constant values."""
    state = random_state_dict(PACK.manifest, seed)
    for name, kernel in pamr_kernels().items():
        state[f"_aff.{name}.kernel"] = kernel.clone()
    _calibrate_demo_classifier(state, seed)
    if not with_num_batches_tracked:
        state = type(state)((k, v) for k, v in state.items() if not k.endswith(TOLERATED_MISSING))
    return state


def write_demo_checkpoint(path: str | Path, seed: int = 0, with_num_batches_tracked: bool = True) -> Path:
    """Random demo weights in the published file format: a bare state_dict saved by torch.save."""
    save_torch_checkpoint(path, demo_state_dict(seed, with_num_batches_tracked))
    return Path(path)


def _calibrate_demo_classifier(state: dict[str, torch.Tensor], seed: int) -> None:
    """Rescale the random classifier so demo masks hold several classes, not only background.

    Random weights leave the 20 class logits within ~0.02 of each other and far below the
    constant background logit, so every pixel would be background and the class selection,
    the merge and the CRF would see nothing. One forward pass on a smooth test pattern gives
    the classifier's input statistics; the weights are scaled to a fixed logit spread and
    the biases centred near the background logit. The values still mean nothing.
    """
    model = _build_uninitialised()
    model.load_state_dict(state, strict=True)  # the manifest names every key of the network
    captured = {}
    hook = model.last_conv[8].register_forward_hook(
        lambda module, inputs, output: captured.update(features=inputs[0], logits=output))
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 3, 6, 6, generator=generator) * 1.5
    pattern = F.interpolate(coarse, size=(DEMO_CALIBRATION_SIDE,) * 2, mode="bilinear",
                            align_corners=False)
    with torch.no_grad():
        model.class_logits(pattern)
    hook.remove()
    weight, bias = state["last_conv.8.weight"], state["last_conv.8.bias"]
    spread = captured["logits"].flatten(2).std(-1).mean().clamp_min(1e-6)
    weight = weight * (DEMO_LOGIT_SPREAD / spread)
    mean_features = captured["features"].mean((0, 2, 3))
    centred = BACKGROUND_LOGIT - DEMO_BIAS_BELOW_BACKGROUND - weight.flatten(1) @ mean_features
    state["last_conv.8.weight"] = weight
    state["last_conv.8.bias"] = centred + torch.randn(bias.shape, generator=generator) * DEMO_BIAS_JITTER
