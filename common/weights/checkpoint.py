"""Reading the original published checkpoints safely, and loading them strictly.

Nothing here executes code from a checkpoint file, and nothing is allocated from what a file
merely declares: its structure is read first with stand-ins for tensors and arrays
(common.weights.checkpoint_scan) and checked against the file and the pack's manifest; then torch
files go through `torch.load(weights_only=True)` with only the globals those files need
allowlisted, and pickles (`.pkl`, detectron2 style) become numpy arrays of the bytes read.
After loading, every tensor is checked against the network (names, shapes, dtypes, NaN/Inf)
before a single weight is copied into it.
"""
from __future__ import annotations

import collections
import math
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch

from common.weights.checkpoint_scan import (LEGACY_TORCH_HEAD, QUANTIZED_DTYPES, ArrayRecord,
                                            TensorRecord, iter_records, materialise, overlapping_view,
                                            scan_checkpoint, verify_zip_checksums)
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


@dataclass(frozen=True)
class WeightsLayout:
    """Where a pack's weights sit in its checkpoint file, and which manifest lists them.

    `manifest` names common/weights/manifests/<manifest>.keys.json: with it, stride-0 views and the
    bytes the weights declare are checked against the published checkpoint before any tensor
    data is read.
    `sub_keys`: names of the sub-dict holding the weights, tried in order (e.g. "model");
    a container that is itself a flat tensor dict is accepted as is. A prefix in
    `strip_prefixes` is removed when every key carries it; `drop_keys` are ignored (training
    buffers); `tolerated_missing_suffixes` name buffers that may be absent without changing
    the numerics (BatchNorm's `num_batches_tracked` in files saved by old torch).
    """
    manifest: str | None = None
    sub_keys: tuple[str, ...] = ()
    strip_prefixes: tuple[str, ...] = ("module.",)
    drop_keys: tuple[str, ...] = ()
    tolerated_missing_suffixes: tuple[str, ...] = ()


def read_checkpoint(path: str | Path, layout: WeightsLayout | None = None) -> object:
    """Return the raw object stored in a `.pth`, `.pth.tar`, `.pt` or `.pkl` checkpoint.

    The file's structure is read first without its tensor data (common.weights.checkpoint_scan);
    with a `layout` the weights are also checked against the pack's manifest. Only then are
    the tensors read, so what is allocated is bounded by what the file and the manifest say.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: checkpoint file is empty")
    file_format = _file_format(path)
    scanned = scan_checkpoint(path, file_format)
    _check_declared_weights(scanned.tree, path, layout)
    if file_format == "pickle":
        return materialise(scanned.tree)
    if file_format == "torch-zip":
        verify_zip_checksums(path)
    return _read_torch(path)


def _file_format(path: Path) -> str:
    # torch.save writes a zip archive since torch 1.6 (it always starts with a local file
    # header, also when cut short); older files start with torch's magic number. Decided by
    # content, not by suffix: `.pth.tar` and `.pkl` names are both seen.
    with open(path, "rb") as handle:
        head = handle.read(len(LEGACY_TORCH_HEAD))
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head == LEGACY_TORCH_HEAD:
        return "torch-legacy"
    return "pickle"


def _read_torch(path: Path) -> object:
    try:
        with torch.serialization.safe_globals(_torch_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(_torch_refusal(path, str(err))) from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:  # torch's reader on damaged data
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


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def extract_state_dict(container: object, path: str | Path, *, sub_keys: Iterable[str] = (),
                       strip_prefixes: Iterable[str] = ("module.",),
                       drop_keys: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside a checkpoint container and normalise it.

    Names are those of the model (prefix stripped, `drop_keys` left out). Floating tensors are
    cast to float32 (mixed-precision training files); integer buffers keep their dtype.
    """
    layout = WeightsLayout(None, tuple(sub_keys), tuple(strip_prefixes), tuple(drop_keys))
    tensors = collect_tensors(container, path, layout)
    return {name: value.float() if value.is_floating_point() else value
            for name, value in tensors.items()}


def collect_tensors(container: object, path: str | Path, layout: WeightsLayout) -> dict[str, torch.Tensor]:
    """The weights of `container` under the model's names, as stored (no dtype change)."""
    return {name: _to_tensor(value, name, path)
            for name, value in _weights_by_name(container, path, layout).items()}


def _weights_by_name(container: object, path, layout: WeightsLayout) -> dict[str, object]:
    """The weights dict found by the layout's rules, keyed by model names (values untouched)."""
    tensors = _find_tensor_dict(container, path, tuple(layout.sub_keys))
    for key in tensors:
        if not isinstance(key, str):
            raise UserError(f"{path}: the weights have a key {key!r} ({type(key).__name__}); "
                            "tensor names are text")
    drop = set(layout.drop_keys)
    tensors = {name: value for name, value in tensors.items() if name not in drop}
    for prefix in layout.strip_prefixes:
        if tensors and all(name.startswith(prefix) for name in tensors):
            tensors = {name[len(prefix):]: value for name, value in tensors.items()}
    return tensors


def _find_tensor_dict(container: object, path, sub_keys: tuple[str, ...]) -> Mapping:
    if not isinstance(container, Mapping):
        raise UserError(f"{path}: expected a dict of weights, found {type(container).__name__}")
    for key in sub_keys:
        if key in container and isinstance(container[key], Mapping):
            return container[key]
    # Mostly tensors: a flat state_dict with a stray entry, which _to_tensor then names.
    array_like = sum(1 for value in container.values() if _is_array_like(value))
    if container and array_like > len(container) / 2:
        return container
    wanted = " or ".join(repr(key) for key in sub_keys) or "a flat tensor dict"
    raise UserError(f"{path}: no weights found: expected {wanted}; top-level keys are "
                    f"{sorted(map(str, container))[:REPORT_FIRST_N]}{_nested_model_hint(container)}")


def _is_array_like(value: object) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray, TensorRecord, ArrayRecord))


def _to_tensor(value: object, name: str, path) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value_kind(value.dtype) not in _NUMBER_KINDS:
            raise UserError(f"{path}: tensor '{name}' is a numpy {value.dtype.str} array "
                            f"({value_kind(value.dtype)}), not numbers")
        # (np.ascontiguousarray would turn a 0-d array into shape [1])
        value = torch.from_numpy(value if value.flags.c_contiguous else value.copy())
    if not isinstance(value, torch.Tensor):
        raise UserError(f"{path}: entry '{name}' is a {type(value).__name__}, not a tensor")
    unusable = _unusable_kind(value)
    if unusable:
        raise UserError(f"{path}: tensor '{name}' is {unusable}; weights are plain dense tensors")
    return value


def _unusable_kind(tensor: torch.Tensor) -> str | None:
    if tensor.layout != torch.strided:
        return f"a {str(tensor.layout).replace('torch.', '').replace('_coo', '')} tensor"
    if tensor.is_quantized:
        return "a quantized tensor"
    if tensor.is_meta:
        return "a meta tensor (a shape without values)"
    if tensor.is_nested:
        return "a nested tensor"
    return None


# ---- dtypes and values -------------------------------------------------------------------

_NUMBER_KINDS = ("floating-point", "integer", "boolean", "complex")
_NUMPY_KINDS = {"f": "floating-point", "i": "integer", "u": "integer", "b": "boolean",
                "c": "complex", "U": "text", "S": "bytes", "O": "Python objects", "V": "raw records",
                "M": "dates", "m": "time spans"}


def value_kind(dtype) -> str:
    """What a torch or numpy dtype holds: 'floating-point', 'integer', 'complex', ..."""
    if isinstance(dtype, np.dtype):
        return _NUMPY_KINDS.get(dtype.kind, "unknown values")
    if dtype.is_floating_point:
        return "floating-point"
    if dtype.is_complex:
        return "complex"
    if dtype == torch.bool:
        return "boolean"
    if dtype in QUANTIZED_DTYPES:
        return "quantized"
    return "integer"


def dtype_problem(found, expected: torch.dtype) -> str | None:
    """Why a tensor of dtype `found` cannot stand for the network's `expected` one, or None.

    Another width of the same kind (float16 for float32, int32 for int64) is converted."""
    found_kind, expected_kind = value_kind(found), value_kind(expected)
    if found_kind == expected_kind:
        return None
    return (f"is {_dtype_text(found)}, expected {'an' if expected_kind[0] in 'aeiou' else 'a'} "
            f"{expected_kind} tensor (the network's is {_dtype_text(expected)})")


def _dtype_text(dtype) -> str:
    return dtype.name if isinstance(dtype, np.dtype) else str(dtype).replace("torch.", "")


def _manifest_dtypes(manifest: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    from common.weights.demo import manifest_shapes
    return {name: (shape, getattr(torch, dtype)) for name, (shape, dtype) in manifest_shapes(manifest).items()}


# The weights of a file may hold at most this much tensor data relative to the published
# checkpoint: all of it in float64 is twice its float32 size; the slack covers tiny extras.
DECLARED_BYTES_FACTOR = 2
DECLARED_BYTES_SLACK = 1 << 20


def _check_declared_weights(tree: object, path: Path, layout: WeightsLayout | None) -> None:
    """Before any tensor data is read: views that repeat values, and how much data the weights
    declare against the published checkpoint's size. (Names, shapes and dtypes are compared
    with the network's after the read, in that order, before anything is copied into it.)"""
    manifest = _manifest_dtypes(layout.manifest) if layout and layout.manifest else {}
    weights = _weights_by_name(tree, path, layout) if layout else {}
    # A view showing more values than its storage holds (stride 0) costs its full shape once
    # cast or copied: accepted only where the manifest says the tensor has that shape.
    expected_views = {id(record) for name, record in weights.items()
                      if isinstance(record, TensorRecord) and name in manifest
                      and record.shape == tuple(manifest[name][0])}
    for name, record in iter_records(tree):
        if isinstance(record, TensorRecord) and overlapping_view(record) and id(record) not in expected_views:
            raise UserError(f"{path}: tensor '{name}' shows {record.numel} values {list(record.shape)} "
                            f"from a storage of {record.storage.numel} (stride {list(record.stride)}): "
                            "a saved weight stores each of its values")
    if manifest:
        _check_declared_size(weights, manifest, path, layout.manifest)


def _check_declared_size(weights: Mapping, manifest: Mapping, path: Path, model_name: str) -> None:
    storages = {}
    for record in weights.values():
        if isinstance(record, TensorRecord):
            storage = record.storage.base or record.storage
            storages[id(storage)] = storage.nbytes
        elif isinstance(record, ArrayRecord):
            storages[id(record)] = record.declared_nbytes
    declared = sum(storages.values())
    published = sum(math.prod(shape) * dtype.itemsize for shape, dtype in manifest.values())
    if declared > DECLARED_BYTES_FACTOR * published + DECLARED_BYTES_SLACK:
        raise UserError(f"{path}: the weights declare {declared} bytes of tensor data, more than "
                        f"{DECLARED_BYTES_FACTOR}x the {published} bytes of the published {model_name} "
                        "checkpoint")


def check_tensor_values(file_state: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor],
                        path) -> None:
    """Dtypes against the network's, NaN/Inf, negative BatchNorm variances: one line each."""
    for name, value in file_state.items():
        if name in model_state:
            problem = dtype_problem(value.dtype, model_state[name].dtype)
            if problem:
                raise UserError(f"{path}: tensor '{name}' {problem}")
    non_finite = [(name, count) for name, count in
                  ((name, _non_finite_count(value)) for name, value in file_state.items()) if count]
    if non_finite:
        name, count = non_finite[0]
        more = f"; {len(non_finite) - 1} more tensor(s) hold NaN/Inf too" if len(non_finite) > 1 else ""
        raise UserError(f"{path}: tensor '{name}' holds {count} NaN/Inf value(s) of "
                        f"{file_state[name].numel()}{more}")
    for name, value in file_state.items():
        if name.rsplit(".", 1)[-1] == "running_var" and value.is_floating_point():
            negative = int((value < 0).sum())
            if negative:
                raise UserError(f"{path}: tensor '{name}' holds {negative} negative value(s) (lowest "
                                f"{float(value.min()):.4g}): a BatchNorm running variance is >= 0")


def _non_finite_count(tensor: torch.Tensor) -> int:
    if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
        return 0
    # One reduction, no allocation: a NaN or Inf anywhere makes the sum non-finite. Only then
    # (or when a large finite sum overflows) are the values counted one by one.
    if bool(torch.isfinite(tensor.sum())):
        return 0
    return int(tensor.numel() - torch.isfinite(tensor).sum())


def convert_to_model_dtypes(file_state: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor],
                            path) -> dict[str, torch.Tensor]:
    """Tensors stored in another width (float16, bfloat16, float64, int32) in the network's
    dtype; says so in one warning line, since published files are sometimes saved in half."""
    converted, counts = {}, collections.Counter()
    for name, value in file_state.items():
        wanted = model_state[name].dtype if name in model_state else value.dtype
        if value.dtype != wanted:
            counts[(_dtype_text(value.dtype), _dtype_text(wanted))] += 1
            value = value.to(wanted)
        converted[name] = value
    if counts:
        parts = ", ".join(f"{count} {found} tensor(s) to {wanted}" for (found, wanted), count in sorted(counts.items()))
        print(f"[WARNING] {path}: converted {parts} (the network's dtypes)", file=sys.stderr)
    return converted


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
    """Load every tensor or fail with one line saying what does not match.

    Names and shapes first (missing, unexpected, wrong shape), then dtypes and values
    (check_tensor_values); tensors of another width are converted with a warning.
    `tolerated_missing_suffixes` names buffers that may be absent from a file without changing
    the numerics (e.g. BatchNorm's `num_batches_tracked` in files saved by old torch).
    """
    model_state = model.state_dict()
    report = mismatch_report(model_state, file_state, tolerated_missing_suffixes)
    if any(report.values()):
        _raise_if_other_model(model, model_state, file_state, report, path)
        raise UserError(f"{path}: checkpoint does not match {type(model).__name__}: "
                        f"{format_report(report)}")
    check_tensor_values(file_state, model_state, path)
    merged = dict(model_state)
    merged.update(convert_to_model_dtypes(file_state, model_state, path))
    model.load_state_dict(merged, strict=True)


def load_checkpoint_into(model: torch.nn.Module, path: str | Path, *, layout: WeightsLayout | None = None,
                         sub_keys: Iterable[str] = (), strip_prefixes: Iterable[str] = ("module.",),
                         drop_keys: Iterable[str] = (),
                         tolerated_missing_suffixes: Iterable[str] = ()) -> torch.nn.Module:
    """read_checkpoint + load_container_into, the usual path of a pack."""
    layout = layout or WeightsLayout(None, tuple(sub_keys), tuple(strip_prefixes), tuple(drop_keys),
                                     tuple(tolerated_missing_suffixes))
    return load_container_into(model, read_checkpoint(path, layout), path, layout=layout)


def load_container_into(model: torch.nn.Module, container: object, path: str | Path, *,
                        layout: WeightsLayout | None = None, sub_keys: Iterable[str] = (),
                        strip_prefixes: Iterable[str] = ("module.",), drop_keys: Iterable[str] = (),
                        tolerated_missing_suffixes: Iterable[str] = ()) -> torch.nn.Module:
    """Find the weights in a container already read with read_checkpoint and load them strictly.

    Lets a pack read (and refuse) the file before it spends seconds building a big network.
    """
    layout = layout or WeightsLayout(None, tuple(sub_keys), tuple(strip_prefixes), tuple(drop_keys),
                                     tuple(tolerated_missing_suffixes))
    file_state = collect_tensors(container, path, layout)
    load_strict(model, file_state, path, layout.tolerated_missing_suffixes)
    return model


# ---- naming the model a foreign checkpoint belongs to ------------------------------------
#
# Giving one pack another pack's checkpoint is a common slip; a list of hundreds of missing
# and unexpected keys hides it. The key manifests (common/weights/manifests) say which published
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
