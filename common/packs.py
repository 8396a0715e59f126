"""Importing a pack's modules from tests, benchmarks and run_all.

Pack folders (`3D_HRNet/`, ...) are not Python packages and every pack has a `model.py`, so
each module is loaded under a unique name; while a pack script is loaded, `model` points at
that pack's own model module, which is what `import model` in the script expects. Other
sibling modules carry pack-unique names (`pointrend_constants`), found through the pack folder,
which is on sys.path while a pack module loads (as it is when the script runs itself).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKS = ("RefineNet", "3D_HRNet", "PointRend", "Wseg", "MaskRCNN_mmdet")


def pack_dir(pack: str) -> Path:
    return REPO_ROOT / pack


def load_pack_module(pack: str, module_name: str) -> ModuleType:
    """Load `<pack>/<module_name>.py` (cached) with `model` bound to the pack's model.py."""
    model_module = _load_unique(pack, "model")
    if module_name == "model":
        return model_module
    previous = sys.modules.get("model")
    sys.modules["model"] = model_module
    try:
        return _load_unique(pack, module_name)
    finally:
        if previous is None:
            sys.modules.pop("model", None)
        else:
            sys.modules["model"] = previous


def _load_unique(pack: str, module_name: str) -> ModuleType:
    unique = f"segzoo_pack_{pack.replace('-', '_')}_{module_name}"
    if unique in sys.modules:
        return sys.modules[unique]
    path = pack_dir(pack) / f"{module_name}.py"
    spec = importlib.util.spec_from_file_location(unique, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    sys.path.insert(0, str(pack_dir(pack)))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(unique, None)
        raise
    finally:
        sys.path.remove(str(pack_dir(pack)))
    return module
