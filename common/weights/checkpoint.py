"""Reading the original published checkpoints safely, and loading them strictly.

Nothing here executes code from a checkpoint file: torch files go through
`torch.load(weights_only=True)` with only the globals those files need allowlisted, and
pickles (`.pkl`, detectron2 style) through an unpickler that knows dicts, lists, numpy arrays
and scalars and refuses everything else.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch

from common.cli import UserError

REPORT_FIRST_N = 5

# (module, name) pairs a legitimate checkpoint of the five packs may reference. numpy moved its
# core to `numpy._core` in 2.0; files pickled by either numpy name both occur in the wild.
_NUMPY_GLOBALS = {
    (core, name)
    for core in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")}
_PICKLE_GLOBALS = _NUMPY_GLOBALS | {
    ("collections", "OrderedDict"),
    ("collections", "Counter"),  # MultiStepLR milestones in densetorch/ModelZoo training files
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
    # Protocol-2 pickles written by Python 3 (save_numpy_pickle, detectron2 .pkl) store array
    # bytes as _codecs.encode(text, "latin1"): a pure function, safe to allow.
    ("_codecs", "encode"),
}


def _numpy_dtype_classes() -> list:
    # Since numpy 1.25 every dtype pickles through its own class, e.g. numpy.dtypes.Float64DType.
    return [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGSUV"]


def _torch_safe_globals() -> list:
    found = []
    for module_name, attr in sorted(_PICKLE_GLOBALS):
        module = _import_optional(module_name)
        if module is not None and hasattr(module, attr):
            found.append(getattr(module, attr))
    return found + _numpy_dtype_classes()


def _import_optional(module_name: str):
    import importlib
    try:
        return importlib.import_module(module_name)
    except ImportError:
        return None


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, name: str):
        super().__init__(f"refusing to load global '{name}'")
        self.name = name


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for detectron2-style `.pkl` weights: containers, numpy arrays, scalars only."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        if module in ("numpy.dtypes",) and name.endswith("DType"):
            return super().find_class(module, name)
        raise _RefusedGlobal(f"{module}.{name}")


def read_checkpoint(path: str | Path) -> object:
    """Return the raw object stored in a `.pth`, `.pth.tar`, `.pt` or `.pkl` checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: checkpoint file is empty")
    if _is_torch_file(path):
        return _read_torch(path)
    return _read_pickle(path)


# The first record of a legacy (pre-1.6, non-zip) torch.save file: protocol-2 pickle of the
# integer 0x1950a86a20f9469cfc6c, torch's magic number.
_LEGACY_TORCH_HEAD = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _is_torch_file(path: Path) -> bool:
    # torch.save writes a zip archive since torch 1.6; older files start with torch's magic
    # number, which a restricted pickle reader cannot follow (tensor data comes after the
    # pickle). Decided by content, not by suffix: `.pth.tar` and `.pkl` names are both seen.
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as handle:
        head = handle.read(len(_LEGACY_TORCH_HEAD))
    # A zip cut short has lost its central directory but still starts with a local header.
    return head == _LEGACY_TORCH_HEAD or head.startswith(b"PK\x03\x04")


def _read_torch(path: Path) -> object:
    try:
        with torch.serialization.safe_globals(_torch_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(_torch_refusal(path, str(err))) from None
    except Exception as err:  # noqa: BLE001  a cut or corrupted file fails in many ways
        first_sentence = _one_line(err).split(". ")[0]
        raise UserError(f"{path}: not a readable torch checkpoint ({first_sentence})") from None


def _torch_refusal(path: Path, message: str) -> str:
    # torch's weights-only error is a paragraph; the global it stopped at is the fact to show.
    found = re.search(r"GLOBAL ([\w.]+)", message)
    name = found.group(1) if found else None
    if name is None or name.startswith("torch."):
        # An allowed module's name cut short, or no global at all: a damaged file, not a threat.
        detail = f"it names unknown {name}" if name else _one_line(message)
        return f"{path}: not a readable torch checkpoint (cut short or corrupted: {detail})"
    return (f"{path}: refused to load: unpickling it would call {name} (code, not weights); "
            "only plain weight containers are read")


def _read_pickle(path: Path) -> object:
    try:
        with open(path, "rb") as handle:
            return _RestrictedUnpickler(handle, encoding="latin1").load()
    except _RefusedGlobal as err:
        raise UserError(f"{path}: refused to load: unpickling it would call {err.name} (code, not "
                        "weights); only plain weight containers are read") from None
    except Exception as err:  # noqa: BLE001  a corrupted pickle raises almost any error type
        raise UserError(f"{path}: not a readable checkpoint: neither a torch file nor a weights "
                        f"pickle ({type(err).__name__}: {_one_line(err)[:120]})") from None


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def extract_state_dict(container: object, path: str | Path, *, sub_keys: Iterable[str] = (),
                       strip_prefixes: Iterable[str] = ("module.",),
                       drop_keys: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside a checkpoint container and normalise it.

    `sub_keys`: names of the sub-dict holding the weights, tried in order (e.g. "model",
    "state_dict"); a container that is itself a flat tensor dict is accepted as is.
    A prefix in `strip_prefixes` is removed when every key carries it. Floating tensors are
    cast to float32 (mixed-precision training files); integer buffers keep their dtype.
    """
    tensors = _find_tensor_dict(container, path, tuple(sub_keys))
    drop = set(drop_keys)
    tensors = {name: value for name, value in tensors.items() if name not in drop}
    for prefix in strip_prefixes:
        if tensors and all(name.startswith(prefix) for name in tensors):
            tensors = {name[len(prefix):]: value for name, value in tensors.items()}
    return {name: _to_tensor(value, name, path) for name, value in tensors.items()}


def _find_tensor_dict(container: object, path, sub_keys: tuple[str, ...]) -> Mapping:
    if not isinstance(container, Mapping):
        raise UserError(f"{path}: expected a dict of weights, found {type(container).__name__}")
    for key in sub_keys:
        if key in container and isinstance(container[key], Mapping):
            return container[key]
    if container and all(_is_array_like(value) for value in container.values()):
        return container
    wanted = " or ".join(repr(key) for key in sub_keys) or "a flat tensor dict"
    raise UserError(f"{path}: no weights found: expected {wanted}; top-level keys are "
                    f"{sorted(map(str, container))[:REPORT_FIRST_N]}{_nested_model_hint(container)}")


def _is_array_like(value: object) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _to_tensor(value: object, name: str, path) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        # (np.ascontiguousarray would turn a 0-d array into shape [1])
        value = torch.from_numpy(value if value.flags.c_contiguous else value.copy())
    if not isinstance(value, torch.Tensor):
        raise UserError(f"{path}: entry '{name}' is a {type(value).__name__}, not a tensor")
    if value.is_floating_point():
        value = value.float()
    return value


def mismatch_report(model_state: Mapping[str, torch.Tensor], file_state: Mapping[str, torch.Tensor],
                    tolerated_missing_suffixes: Iterable[str] = ()) -> dict[str, list[str]]:
    """Missing, unexpected and wrong-shape keys between a model and a checkpoint."""
    tolerated = tuple(tolerated_missing_suffixes)
    missing = [k for k in model_state if k not in file_state and not k.endswith(tolerated or ("\0",))]
    unexpected = [k for k in file_state if k not in model_state]
    wrong_shape = [f"{k} {list(file_state[k].shape)} vs {list(model_state[k].shape)}"
                   for k in model_state if k in file_state
                   and tuple(file_state[k].shape) != tuple(model_state[k].shape)]
    return {"missing": missing, "unexpected": unexpected, "wrong_shape": wrong_shape}


def format_report(report: Mapping[str, list[str]]) -> str:
    parts = []
    for kind, keys in report.items():
        if keys:
            shown = ", ".join(keys[:REPORT_FIRST_N]) + (", ..." if len(keys) > REPORT_FIRST_N else "")
            parts.append(f"{len(keys)} {kind.replace('_', ' ')} ({shown})")
    return "; ".join(parts)


def load_strict(model: torch.nn.Module, file_state: Mapping[str, torch.Tensor], path: str | Path,
                tolerated_missing_suffixes: Iterable[str] = ()) -> None:
    """Load every tensor or fail with one line listing what does not match.

    `tolerated_missing_suffixes` names buffers that may be absent from a file without changing
    the numerics (e.g. BatchNorm's `num_batches_tracked` in files saved by old torch).
    """
    model_state = model.state_dict()
    report = mismatch_report(model_state, file_state, tolerated_missing_suffixes)
    if any(report.values()):
        _raise_if_other_model(model, model_state, file_state, report, path)
        raise UserError(f"{path}: checkpoint does not match {type(model).__name__}: "
                        f"{format_report(report)}")
    merged = dict(model_state)
    merged.update(file_state)
    model.load_state_dict(merged, strict=True)


def load_checkpoint_into(model: torch.nn.Module, path: str | Path, *, sub_keys: Iterable[str] = (),
                         strip_prefixes: Iterable[str] = ("module.",), drop_keys: Iterable[str] = (),
                         tolerated_missing_suffixes: Iterable[str] = ()) -> torch.nn.Module:
    """read_checkpoint + extract_state_dict + load_strict, the usual path of a pack."""
    container = read_checkpoint(path)
    return load_container_into(model, container, path, sub_keys=sub_keys, strip_prefixes=strip_prefixes,
                               drop_keys=drop_keys, tolerated_missing_suffixes=tolerated_missing_suffixes)


def load_container_into(model: torch.nn.Module, container: object, path: str | Path, *,
                        sub_keys: Iterable[str] = (), strip_prefixes: Iterable[str] = ("module.",),
                        drop_keys: Iterable[str] = (),
                        tolerated_missing_suffixes: Iterable[str] = ()) -> torch.nn.Module:
    """extract_state_dict + load_strict on a container already read with read_checkpoint.

    Lets a pack read (and refuse) the file before it spends seconds building a big network.
    """
    file_state = extract_state_dict(container, path, sub_keys=sub_keys,
                                    strip_prefixes=strip_prefixes, drop_keys=drop_keys)
    load_strict(model, file_state, path, tolerated_missing_suffixes)
    return model


# ---- naming the model a foreign checkpoint belongs to ------------------------------------
#
# Giving one pack another pack's checkpoint is a common slip; a list of hundreds of missing
# and unexpected keys hides it. The key manifests (common/manifests) say which published
# checkpoint a set of tensor names comes from.

IDENTIFY_MIN_OVERLAP = 0.9  # share of a manifest's names a file must hold to be called that model
_WRAPPER_PREFIXES = ("module.", "model.")


def identify_model(keys: Iterable[str]) -> str | None:
    """The segzoo model whose published checkpoint has (nearly) these tensor names, or None."""
    from common.weights.manifest import manifest_names, manifest_shapes

    names = _without_wrapper_prefixes(set(map(str, keys)))
    best, best_overlap = None, IDENTIFY_MIN_OVERLAP
    for model_name in manifest_names():
        try:
            manifest = set(manifest_shapes(model_name))
        except (OSError, ValueError, KeyError):
            continue
        if not manifest:
            continue
        overlap = len(names & manifest) / len(manifest)
        if overlap >= best_overlap:
            best, best_overlap = model_name, overlap
    return best


def _without_wrapper_prefixes(names: set[str]) -> set[str]:
    # Training wrappers add `module.` (DataParallel) or `model.` (HRNet's FullModel).
    for prefix in _WRAPPER_PREFIXES:
        wrapped = {n for n in names if n.startswith(prefix)}
        if wrapped and len(wrapped) >= len(names) / 2:
            names = {n[len(prefix):] for n in wrapped} | (names - wrapped)
    return names


def _raise_if_other_model(model: torch.nn.Module, model_state: Mapping, file_state: Mapping,
                          report: Mapping[str, list[str]], path) -> None:
    """One short line when the file is recognisably another model's checkpoint."""
    found = sum(1 for name in model_state if name in file_state)
    if found >= len(model_state) / 2:
        return  # mostly this model's names: the detailed key report is what helps
    other = identify_model(file_state)
    own = identify_model(model_state)
    if other is None or other == own:
        return
    expected = own or type(model).__name__
    raise UserError(f"{path}: this is a {other} checkpoint (by its tensor names), not a {expected} one: "
                    f"only {found} of {len(model_state)} {type(model).__name__} tensors found by name")


def _nested_model_hint(container: Mapping) -> str:
    for key, value in container.items():
        if isinstance(value, Mapping) and value and all(_is_array_like(v) for v in value.values()):
            other = identify_model(value)
            if other:
                return f"; the tensors under {str(key)!r} are those of a {other} checkpoint"
    return ""
