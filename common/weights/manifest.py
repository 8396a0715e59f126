"""The key manifests: every tensor (name, shape, dtype) of each published checkpoint, and how the
file wraps them (`manifests/<Model>.keys.json`). Torch-free: what a checkpoint must hold is
known before a byte of it is loaded."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"


def manifest_names() -> list[str]:
    """The manifest of every pack, in the packs' order."""
    from common.pipeline.packs import PACK_NAMES, pack_config
    return [pack_config(pack).manifest for pack in PACK_NAMES]


@lru_cache(maxsize=None)
def load_manifest(model_name: str) -> dict:
    path = MANIFEST_DIR / f"{model_name}.keys.json"
    return json.loads(path.read_text(encoding="utf-8"))


def manifest_shapes(model_name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """{tensor name: (shape, dtype name)} in the manifest's order."""
    return {name: (tuple(shape), dtype) for name, shape, dtype in load_manifest(model_name)["tensors"]}
