"""The packs: their names, their folders, their configs and modules.

Each pack folder is a Python package (installed under the name its config gives, e.g. the
`3D_HRNet/` folder as `hrnet3d`; see pyproject.toml), so its modules import as
`hrnet3d.model` from anywhere, and a script run in the folder imports its siblings the same way.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from common.pipeline.pack_config import PackConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
# Pack name (its folder) -> its package. The order is the order of run_all and the summary.
PACKAGES = {"RefineNet": "refinenet", "3D_HRNet": "hrnet3d", "PointRend": "pointrend", "Wseg": "wseg",
            "MaskRCNN_mmdet": "maskrcnn_mmdet"}
PACK_NAMES = tuple(PACKAGES)


def pack_dir(pack: str) -> Path:
    return REPO_ROOT / pack


def pack_module(pack: str, module_name: str) -> ModuleType:
    """`<pack>/<module_name>.py`, e.g. pack_module("3D_HRNet", "model") is `hrnet3d.model`."""
    return importlib.import_module(f"{PACKAGES[pack]}.{module_name}")


def pack_config(pack: str) -> PackConfig:
    config = pack_module(pack, "config").PACK
    assert config.name == pack and config.package == PACKAGES[pack], (pack, config.name, config.package)
    return config
