"""Randomly initialised checkpoints in the ORIGINAL file formats, built from the key manifests.

`common/weights/manifests/<Model>.keys.json` lists every tensor of each published checkpoint (name,
shape, dtype) and how the file wraps them. The tests and the demo write such files with random
values ("demo weights") so the real loading code, the export and the metric run end to end
without downloading anything. Values are scaled so that a deep network stays finite and its
logits vary across classes; they carry no meaning.
"""
from __future__ import annotations

import math
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from common.files.atomic import atomic_path
from common.weights.manifest import manifest_shapes

def random_state_dict(model_name: str, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Random tensors with the manifest's names, shapes and dtypes."""
    generator = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for name, (shape, dtype) in manifest_shapes(model_name).items():
        state[name] = _random_tensor(name, shape, dtype, generator)
    return state


def _random_tensor(name: str, shape: tuple[int, ...], dtype: str, gen: torch.Generator) -> torch.Tensor:
    if dtype.startswith("int"):
        return torch.zeros(shape, dtype=getattr(torch, dtype))
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return torch.empty(shape).uniform_(0.5, 1.5, generator=gen)
    if leaf == "running_mean":
        return torch.randn(shape, generator=gen) * 0.1
    if len(shape) <= 1:
        # Norm scales near 1 keep activations alive; biases small so classes differ mildly.
        if leaf == "weight":
            return torch.empty(shape).uniform_(0.5, 1.0, generator=gen)
        return torch.randn(shape, generator=gen) * 0.05
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=gen) * (1.0 / math.sqrt(fan_in))


def save_torch_checkpoint(path: str | Path, container: object) -> None:
    """torch.save through a temporary name (the files the packs read as `.pth`/`.pth.tar`).
    Saved through a file object, so the zip's inner folder is torch's fixed `archive/`, not the
    random temporary name: the same weights give the same bytes."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(container, handle)


def save_numpy_pickle(path: str | Path, container: Mapping) -> None:
    """A detectron2-style `.pkl`: a pickled dict of numpy arrays (protocol 2, latin1-readable)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump(container, handle, protocol=2)


def as_numpy(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, np.ndarray]":
    return OrderedDict((name, tensor.numpy()) for name, tensor in state.items())
