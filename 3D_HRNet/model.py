"""HRNetV2-W48 + OCR (HRNet-Semantic-Segmentation, branch HRNet-OCR, seg_hrnet_ocr), eval only.

Written here from the facts in docs/specs/3D_HRNet.md; attribute names are chosen so that the
state-dict keys are exactly those of the published Cityscapes checkpoint
(`hrnet_ocr_cs_8162_torch11.pth`, the ModelZoo `hrnet.pth`) once its `model.` prefix is cut.

Read top to bottom: residual blocks, the multi-resolution module, the OCR head, the network,
then what builds and loads it. The forward returns `(aux_logits, ocr_logits)`, both
(B, 19, H/4, W/4): upstream upsamples to the label size only in its evaluation code, and so
does `HRNet_postprocess.py` here.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.weights.checkpoint import WeightsLayout, load_container_into, read_checkpoint
from common.weights.demo import random_state_dict, save_torch_checkpoint
from hrnet3d.config import PACK, NUM_CLASSES
# W48: stage-2/3/4 branch widths; every stage block is a BasicBlock, 4 per branch.
BRANCH_CHANNELS = (48, 96, 192, 384)
STAGE_MODULES = {2: 1, 3: 4, 4: 3}  # HighResolutionModules per stage (yaml NUM_MODULES)
BLOCKS_PER_BRANCH = 4
OCR_MID_CHANNELS = 512
OCR_KEY_CHANNELS = 256
# Every in-network upsample of this model uses align_corners=True (config MODEL.ALIGN_CORNERS).
ALIGN_CORNERS = True

# How the published file wraps the network (see manifest 3D_HRNet.keys.json).
CHECKPOINT_PREFIX = "model."
CHECKPOINT_SUB_KEYS = ("state_dict",)
LOSS_KEY = "loss.criterion.weight"
# Cityscapes class weights of the training loss (upstream cityscapes.py); the published file
# carries them as the loss buffer above, which the demo checkpoint reproduces.
LOSS_CLASS_WEIGHTS = (0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786,
                      1.0023, 0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507)
MANIFEST_NAME = PACK.manifest


def upsample_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bilinear, align_corners=True, to the reference's H and W (read at run time, so the
    exported Resize takes its size from the graph and any input size works)."""
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=ALIGN_CORNERS)


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (no bias) + BN [+ ReLU]: keys `<i>.0.weight`, `<i>.1.*` as in the transitions/fuses."""
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=False),
              nn.BatchNorm2d(out_ch)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


# ---- residual blocks --------------------------------------------------------------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_layer1(in_ch: int = 64, planes: int = 64, blocks: int = 4) -> nn.Sequential:
    """Stage 1: Bottlenecks 64 -> 256; only the first has a projection shortcut."""
    out_ch = planes * Bottleneck.expansion
    downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
    layers = [Bottleneck(in_ch, planes, downsample=downsample)]
    layers += [Bottleneck(out_ch, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


# ---- multi-resolution module ------------------------------------------------------------

class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every output resolution sums all inputs."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(BLOCKS_PER_BRANCH)]) for c in channels)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse_path(channels, i, j) for j in range(self.num_branches))
            for i in range(self.num_branches))
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse_path(channels: tuple[int, ...], i: int, j: int) -> nn.Module | None:
        """How input branch j reaches output branch i (keys fuse_layers.i.j...)."""
        if j == i:
            return None
        if j > i:  # lower resolution: 1x1 projection here, upsample in forward
            return conv_bn(channels[j], channels[i], 1, relu=False)
        # higher resolution: (i - j) stride-2 3x3 convs; only the last changes width and
        # has no ReLU.
        steps = [conv_bn(channels[j], channels[j], 3, stride=2) for _ in range(i - j - 1)]
        steps.append(conv_bn(channels[j], channels[i], 3, stride=2, relu=False))
        return nn.Sequential(*steps)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        fused = []
        for i, paths in enumerate(self.fuse_layers):
            # Summation order as upstream (branch 0 first, then j = 1, 2, ...): float sums
            # are order-sensitive and the graph-fix script relies on this Add chain shape.
            total = xs[0] if i == 0 else paths[0](xs[0])
            for j in range(1, self.num_branches):
                if j == i:
                    total = total + xs[j]
                elif j > i:
                    total = total + upsample_to(paths[j](xs[j]), xs[i])
                else:
                    total = total + paths[j](xs[j])
            fused.append(self.relu(total))
        return fused


def make_transition(prev_channels: tuple[int, ...], channels: tuple[int, ...]) -> nn.ModuleList:
    """Between stages: adapt widths of existing branches, add one stride-2 branch.

    Existing branch of unchanged width -> None (identity); new branch -> a nested
    Sequential(conv_bn s2) on the previous stage's lowest-resolution output (keys `k.0.0`).
    """
    layers = []
    for k, out_ch in enumerate(channels):
        if k < len(prev_channels):
            layers.append(None if prev_channels[k] == out_ch else conv_bn(prev_channels[k], out_ch, 3))
        else:
            layers.append(nn.Sequential(conv_bn(prev_channels[-1], out_ch, 3, stride=2)))
    return nn.ModuleList(layers)


def apply_transition(transition: nn.ModuleList, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for k, layer in enumerate(transition):
        source = xs[k] if k < len(xs) else xs[-1]
        out.append(source if layer is None else layer(source))
    return out


# ---- OCR head -----------------------------------------------------------------------------

def bn_relu(channels: int) -> nn.Sequential:
    """Upstream `BNReLU` is a Sequential(BN, ReLU): its BN keys sit at `<n>.0.*`."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())


class SpatialGather(nn.Module):
    """Object regions: per class, a softmax over all pixels weights the pixel features."""

    def forward(self, feats: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
        batch, classes = class_logits.shape[0], class_logits.shape[1]
        probs = F.softmax(class_logits.reshape(batch, classes, -1), dim=2)  # over pixels
        pixel_feats = feats.reshape(batch, feats.shape[1], -1).permute(0, 2, 1)
        context = torch.matmul(probs, pixel_feats)  # (B, K, C)
        return context.permute(0, 2, 1).unsqueeze(3)  # (B, C, K, 1)


class ObjectAttentionBlock(nn.Module):
    """Pixel-to-object attention (scale 1, so no pooling and no final resize)."""

    def __init__(self, in_ch: int, key_ch: int):
        super().__init__()
        self.key_channels = key_ch
        self.f_pixel = nn.Sequential(nn.Conv2d(in_ch, key_ch, 1, bias=False), bn_relu(key_ch),
                                     nn.Conv2d(key_ch, key_ch, 1, bias=False), bn_relu(key_ch))
        self.f_object = nn.Sequential(nn.Conv2d(in_ch, key_ch, 1, bias=False), bn_relu(key_ch),
                                      nn.Conv2d(key_ch, key_ch, 1, bias=False), bn_relu(key_ch))
        self.f_down = nn.Sequential(nn.Conv2d(in_ch, key_ch, 1, bias=False), bn_relu(key_ch))
        self.f_up = nn.Sequential(nn.Conv2d(key_ch, in_ch, 1, bias=False), bn_relu(in_ch))

    def forward(self, feats: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch = feats.shape[0]
        query = self.f_pixel(feats).reshape(batch, self.key_channels, -1).permute(0, 2, 1)
        key = self.f_object(context).reshape(batch, self.key_channels, -1)
        value = self.f_down(context).reshape(batch, self.key_channels, -1).permute(0, 2, 1)
        similarity = torch.matmul(query, key) * (self.key_channels ** -0.5)
        similarity = F.softmax(similarity, dim=-1)  # over the 19 objects
        attended = torch.matmul(similarity, value).permute(0, 2, 1)  # (B, key, HW)
        attended = attended.reshape(batch, self.key_channels, feats.shape[2], feats.shape[3])
        return self.f_up(attended)


class SpatialOCR(nn.Module):
    def __init__(self, in_ch: int, key_ch: int, out_ch: int, dropout: float = 0.05):
        super().__init__()
        self.object_context_block = ObjectAttentionBlock(in_ch, key_ch)
        self.conv_bn_dropout = nn.Sequential(nn.Conv2d(2 * in_ch, out_ch, 1, bias=False),
                                             bn_relu(out_ch), nn.Dropout2d(dropout))

    def forward(self, feats: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attended = self.object_context_block(feats, context)
        # Concat order [attention output, pixel features] is what the weights were trained on.
        return self.conv_bn_dropout(torch.cat([attended, feats], dim=1))


# ---- the network --------------------------------------------------------------------------

class HRNetOCR(nn.Module):
    """Input (B, 3, H, W) normalised RGB; output (aux_logits, ocr_logits) at 1/4 resolution."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer1()

        stage1_out = (64 * Bottleneck.expansion,)
        widths = {n: BRANCH_CHANNELS[:n] for n in (2, 3, 4)}
        self.transition1 = make_transition(stage1_out, widths[2])
        self.stage2 = self._make_stage(2, widths[2])
        self.transition2 = make_transition(widths[2], widths[3])
        self.stage3 = self._make_stage(3, widths[3])
        self.transition3 = make_transition(widths[3], widths[4])
        self.stage4 = self._make_stage(4, widths[4])

        head_in = sum(BRANCH_CHANNELS)  # 720
        self.conv3x3_ocr = nn.Sequential(nn.Conv2d(head_in, OCR_MID_CHANNELS, 3, 1, 1),
                                         nn.BatchNorm2d(OCR_MID_CHANNELS), nn.ReLU(inplace=True))
        self.ocr_gather_head = SpatialGather()
        self.ocr_distri_head = SpatialOCR(OCR_MID_CHANNELS, OCR_KEY_CHANNELS, OCR_MID_CHANNELS)
        self.cls_head = nn.Conv2d(OCR_MID_CHANNELS, num_classes, 1)
        self.aux_head = nn.Sequential(nn.Conv2d(head_in, head_in, 1), nn.BatchNorm2d(head_in),
                                      nn.ReLU(inplace=True), nn.Conv2d(head_in, num_classes, 1))

    @staticmethod
    def _make_stage(stage: int, channels: tuple[int, ...]) -> nn.Sequential:
        return nn.Sequential(*[HighResolutionModule(channels) for _ in range(STAGE_MODULES[stage])])

    def backbone(self, image: torch.Tensor) -> torch.Tensor:
        """Stem, four stages, then all branches upsampled to 1/4 and concatenated (720 ch)."""
        x = self.relu(self.bn1(self.conv1(image)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = apply_transition(self.transition1, [x])
        xs = self.stage2(xs)
        xs = self.stage3(apply_transition(self.transition2, xs))
        xs = self.stage4(apply_transition(self.transition3, xs))
        return torch.cat([xs[0]] + [upsample_to(x, xs[0]) for x in xs[1:]], dim=1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.backbone(image)
        aux_logits = self.aux_head(feats)
        feats = self.conv3x3_ocr(feats)
        context = self.ocr_gather_head(feats, aux_logits)
        ocr_logits = self.cls_head(self.ocr_distri_head(feats, context))
        return aux_logits, ocr_logits


# ---- building and loading -------------------------------------------------------------------

def build_model(num_classes: int = NUM_CLASSES) -> HRNetOCR:
    return HRNetOCR(num_classes=num_classes).eval()


CHECKPOINT_LAYOUT = WeightsLayout(manifest=MANIFEST_NAME, sub_keys=CHECKPOINT_SUB_KEYS,
                                  strip_prefixes=(CHECKPOINT_PREFIX,), drop_keys=(LOSS_KEY,))


def load_pretrained(path: str | Path, num_classes: int = NUM_CLASSES) -> HRNetOCR:
    """Load the published checkpoint strictly: flat or under 'state_dict', keys prefixed
    'model.', the training loss buffer 'loss.criterion.weight' dropped. Any other missing,
    extra or wrong-shape key is a UserError naming it."""
    container = read_checkpoint(path, CHECKPOINT_LAYOUT)  # fails before the 70M-parameter build
    model = HRNetOCR(num_classes=num_classes)
    load_container_into(model, container, path, layout=CHECKPOINT_LAYOUT)
    return model.eval()


def demo_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the manifest's bare names (no prefix)."""
    return random_state_dict(MANIFEST_NAME, seed=seed)


def write_demo_checkpoint(path: str | Path, seed: int = 0, wrap_state_dict: bool = False,
                          with_loss_key: bool = True) -> Path:
    """Random weights in the published file's format: a flat dict of 'model.<key>' tensors
    plus the loss buffer (as `tools/train.py` saves `FullModel.state_dict()`); optionally
    wrapped under 'state_dict' like the training `checkpoint.pth.tar`. Demo weights only."""
    state = {CHECKPOINT_PREFIX + name: tensor for name, tensor in demo_state_dict(seed).items()}
    if with_loss_key:
        state[LOSS_KEY] = torch.tensor(LOSS_CLASS_WEIGHTS, dtype=torch.float32)
    container = {"state_dict": state} if wrap_state_dict else state
    save_torch_checkpoint(path, container)
    return Path(path)
