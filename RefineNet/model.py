"""RefineNet (ResNet-101) as trained for the Ascend ModelZoo, written to load its checkpoint.

Facts (docs/specs/RefineNet.md, refinenet-pytorch 8f25c07 + the ModelZoo patch): torchvision's
ResNet-101 trunk names; a decoder of residual conv units (RCU, pre-activation) and chained
residual pooling (CRP) whose attribute names are the checkpoint's key names (the `.0.` comes
from an nn.Sequential around each block). `outl1/stage1/g1` belong to the deepest map.
The ModelZoo variant makes the last CRP's max-pool a kernel-1 identity; the keys do not show
it, so a wrong pool loads silently: it is built here on purpose.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from common.weights.checkpoint import WeightsLayout, load_container_into, read_checkpoint
from common.weights.demo import random_state_dict, save_torch_checkpoint
from refinenet.config import PACK, NUM_CLASSES


def conv3x3(in_channels: int, out_channels: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=bias)


class RCUBlock(nn.Module):
    """`n_units` residual units of (ReLU, conv with bias, ReLU, conv without bias) + skip."""

    def __init__(self, channels: int, n_units: int, n_stages: int = 2):
        super().__init__()
        self.n_units, self.n_stages = n_units, n_stages
        for unit in range(1, n_units + 1):
            for stage in range(n_stages):
                name = f"{unit}_conv" if stage == 0 else f"{unit}_conv_relu_varout_dimred"
                setattr(self, name, conv3x3(channels, channels, bias=(stage == 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in range(1, self.n_units + 1):
            residual = x
            for stage in range(self.n_stages):
                name = f"{unit}_conv" if stage == 0 else f"{unit}_conv_relu_varout_dimred"
                x = getattr(self, name)(F.relu(x))
            x = x + residual
        return x


class CRPBlock(nn.Module):
    """Chained residual pooling: each stage pools the previous stage's conv output."""

    def __init__(self, channels: int, n_stages: int = 4, max_pooling: bool = True):
        super().__init__()
        self.n_stages = n_stages
        for stage in range(1, n_stages + 1):
            setattr(self, f"{stage}_outvar_dimred", conv3x3(channels, channels))
        # ModelZoo patch: max_pooling=False keeps a kernel-1 pool, i.e. an identity.
        self.pool = (nn.MaxPool2d(kernel_size=5, stride=1, padding=2) if max_pooling
                     else nn.MaxPool2d(kernel_size=1, stride=1, padding=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = x
        for stage in range(1, self.n_stages + 1):
            top = getattr(self, f"{stage}_outvar_dimred")(self.pool(top))
            x = x + top
        return x


def _wrapped(block: nn.Module) -> nn.Sequential:
    return nn.Sequential(block)  # gives the `.0.` of the checkpoint keys


def upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # Exact skip size (16->32->63->125 for 500), align_corners=True as upstream.
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class RefineNet101(ResNet):
    """ResNet-101 trunk (torchvision names, no fc) + the 4-path RefineNet decoder."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__(Bottleneck, [3, 4, 23, 3])
        del self.fc, self.avgpool
        self.dropout = nn.Dropout(p=0.5)
        self.p_ims1d2_outl1_dimred = conv3x3(2048, 512)
        self.adapt_stage1_b = _wrapped(RCUBlock(512, 2))
        self.mflow_conv_g1_pool = _wrapped(CRPBlock(512))
        self.mflow_conv_g1_b = _wrapped(RCUBlock(512, 3))
        self.mflow_conv_g1_b3_joint_varout_dimred = conv3x3(512, 256)
        for path, in_channels in ((2, 1024), (3, 512), (4, 256)):
            setattr(self, f"p_ims1d2_outl{path}_dimred", conv3x3(in_channels, 256))
            setattr(self, f"adapt_stage{path}_b", _wrapped(RCUBlock(256, 2)))
            setattr(self, f"adapt_stage{path}_b2_joint_varout_dimred", conv3x3(256, 256))
            setattr(self, f"mflow_conv_g{path}_pool", _wrapped(CRPBlock(256, max_pooling=(path != 4))))
            setattr(self, f"mflow_conv_g{path}_b", _wrapped(RCUBlock(256, 3)))
            if path != 4:
                setattr(self, f"mflow_conv_g{path}_b3_joint_varout_dimred", conv3x3(256, 256))
        self.clf_conv = nn.Conv2d(256, num_classes, kernel_size=3, stride=1, padding=1, bias=True)

    def trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        l1 = self.layer1(x)
        l2 = self.layer2(l1)
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        return l1, l2, l3, l4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        l1, l2, l3, l4 = self.trunk(x)
        l4, l3 = self.dropout(l4), self.dropout(l3)
        x4 = F.relu(self.adapt_stage1_b(self.p_ims1d2_outl1_dimred(l4)))
        x4 = self.mflow_conv_g1_b(self.mflow_conv_g1_pool(x4))
        x4 = upsample_to(self.mflow_conv_g1_b3_joint_varout_dimred(x4), l3)
        x3 = self._fuse(2, l3, x4)
        x3 = upsample_to(self.mflow_conv_g2_b3_joint_varout_dimred(x3), l2)
        x2 = self._fuse(3, l2, x3)
        x2 = upsample_to(self.mflow_conv_g3_b3_joint_varout_dimred(x2), l1)
        x1 = self._fuse(4, l1, x2)
        return self.clf_conv(self.dropout(x1))

    def _fuse(self, path: int, skip: torch.Tensor, coarser: torch.Tensor) -> torch.Tensor:
        """dimred + adapt RCU + joint conv on the skip, add the coarser path, ReLU, CRP, RCU."""
        x = getattr(self, f"adapt_stage{path}_b")(getattr(self, f"p_ims1d2_outl{path}_dimred")(skip))
        x = F.relu(getattr(self, f"adapt_stage{path}_b2_joint_varout_dimred")(x) + coarser)
        x = getattr(self, f"mflow_conv_g{path}_pool")(x)
        return getattr(self, f"mflow_conv_g{path}_b")(x)


def build_model(num_classes: int = NUM_CLASSES) -> RefineNet101:
    return RefineNet101(num_classes).eval()


CHECKPOINT_LAYOUT = WeightsLayout(manifest=PACK.manifest, sub_keys=("model",), strip_prefixes=("module.",),
                                  tolerated_missing_suffixes=("num_batches_tracked",))


def load_pretrained(path: str | Path, num_classes: int = NUM_CLASSES) -> RefineNet101:
    """Load `RefineNet_910.pth.tar` (weights under 'model', bare or 'module.' keys) strictly.

    Files saved by old torch may lack BatchNorm's `num_batches_tracked`: that buffer does not
    change inference, so only it may be missing.
    """
    container = read_checkpoint(path, CHECKPOINT_LAYOUT)  # a bad or unsafe file fails before the build
    model = build_model(num_classes)
    load_container_into(model, container, path, layout=CHECKPOINT_LAYOUT)
    return model.eval()


def write_demo_checkpoint(path: str | Path, seed: int = 0, module_prefix: bool = False) -> Path:
    """Random weights in the training script's container (model/epoch/optimisers/schedulers/best_val)."""
    state = random_state_dict(PACK.manifest, seed)
    if module_prefix:  # as written by multi-device (DistributedDataParallel) training
        state = OrderedDict((f"module.{name}", value) for name, value in state.items())
    container = {"model": state, "epoch": 0, "optimisers": [], "schedulers": [],
                 "best_val": [np.float64(0.0)]}
    save_torch_checkpoint(path, container)
    return Path(path)
