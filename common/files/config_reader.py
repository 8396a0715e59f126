"""One typed reader for the packs' YAML configs and numeric flags.

A pack lists the settings it reads as `Setting`s (dotted key, type, range, the value its
network implements, default); `read_config` / `read_config_chain` return their values or stop
with one line naming the file and the key: `cfg.yaml: MODEL.POINT_HEAD.SUBDIVISION_STEPS is
'abc', expected an integer >= 1`. This happens before any checkpoint is read, so a bad config
is never reported as a bad checkpoint. `check_flag` does the same for a command-line value.
Keys a pack does not list are ignored (upstream configs carry many training-only settings).
"""
from __future__ import annotations

import sys

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from common.cli import UserError

MISSING = object()
_KINDS = ("int", "float", "bool", "str")


@dataclass(frozen=True)
class Setting:
    """One config key: `kind` is int, float, bool or str; `length` makes it a list of those."""
    key: str
    kind: str
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = None
    length: int | None = None
    fixed: object = MISSING  # the only value this network implements
    reason: str = ""  # why `fixed`, added to the line

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"unknown setting kind {self.kind!r}")

    def describe(self) -> str:
        """What a valid value looks like, e.g. 'an integer >= 1'."""
        item = _ITEM_TEXT[self.kind] + self._bounds_text()
        if self.length is None:
            return item
        return f"a list of {self.length} {_PLURAL_TEXT[self.kind]}{self._bounds_text()}"

    def _bounds_text(self) -> str:
        parts = []
        if self.minimum is not None and self.maximum is not None:
            parts.append(f" from {_number(self.minimum)} to {_number(self.maximum)}")
        elif self.minimum is not None:
            parts.append(f" >= {_number(self.minimum)}")
        elif self.maximum is not None:
            parts.append(f" <= {_number(self.maximum)}")
        if self.multiple_of is not None:
            parts.append(f"{',' if parts else ''} a multiple of {self.multiple_of}")
        return "".join(parts)

    def check(self, value, source: str):
        """The value, converted (tuple for lists), or UserError '<source>: <key> is ...'."""
        converted = self._converted(value)
        if converted is MISSING:
            raise UserError(f"{source}: {self.key} is {value!r}, expected {self.describe()}")
        if self.fixed is not MISSING and not _same(converted, self.fixed):
            why = f" ({self.reason})" if self.reason else ""
            raise UserError(f"{source}: {self.key} is {value!r}; this network implements "
                            f"{_shown(self.fixed)!r} only{why}")
        return converted

    def _converted(self, value):
        if self.length is None:
            return self._item(value)
        if not isinstance(value, (list, tuple)) or len(value) != self.length:
            return MISSING
        items = tuple(self._item(item) for item in value)
        return MISSING if any(item is MISSING for item in items) else items

    def _item(self, value):
        if self.kind == "int":
            ok = type(value) is int  # bool is an int subclass: True is not a size
        elif self.kind == "float":
            ok = type(value) in (int, float)
            value = float(value) if ok else value
        elif self.kind == "bool":
            ok = type(value) is bool
        else:
            ok = isinstance(value, str)
        if not ok or not self._in_bounds(value):
            return MISSING
        return value

    def _in_bounds(self, value) -> bool:
        if self.kind not in ("int", "float"):
            return True
        if value != value:  # NaN (YAML .nan) is inside no range
            return False
        if self.minimum is not None and value < self.minimum:
            return False
        if self.maximum is not None and value > self.maximum:
            return False
        return self.multiple_of is None or value % self.multiple_of == 0


_ITEM_TEXT = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a text value"}
_PLURAL_TEXT = {"int": "integers", "float": "numbers", "bool": "true/false values", "str": "text values"}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _same(value, fixed) -> bool:
    if isinstance(fixed, (list, tuple)):
        return isinstance(value, tuple) and len(value) == len(fixed) and \
            all(float(a) == float(b) for a, b in zip(value, fixed))
    if isinstance(fixed, float) or isinstance(value, float):
        return float(value) == float(fixed)
    return value == fixed


def _shown(fixed):
    return list(fixed) if isinstance(fixed, tuple) else fixed


# ---- files --------------------------------------------------------------------------------

def load_yaml_mapping(path: str | Path) -> dict:
    """The top-level mapping of a YAML file (empty for an empty file), or one line saying why not."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UserError(f"{path}: not valid YAML{at} ({type(err).__name__})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (not UTF-8), expected a YAML config") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: expected a mapping of config sections at the top level, "
                        f"found a {type(loaded).__name__}")
    return loaded


def lookup(tree: Mapping, key: str, source: str):
    """The value at a dotted key, or MISSING; a section that is not a mapping is named."""
    node = tree
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, Mapping):
            section = ".".join(parts[:depth])
            raise UserError(f"{source}: {section} is {node!r}, expected a section (a mapping of settings)")
        if part not in node:
            return MISSING
        node = node[part]
    return node


def read_settings(tree: Mapping, settings: Iterable[Setting], source: str) -> dict:
    """{key: checked value} for the settings present in `tree`."""
    found = {}
    for setting in settings:
        value = lookup(tree, setting.key, source)
        if value is not MISSING:
            found[setting.key] = setting.check(value, source)
    return found


def defaults_of(settings: Iterable[Setting]) -> dict:
    return {s.key: s.fixed if s.default is None and s.fixed is not MISSING else s.default for s in settings}


def read_config(path: str | Path, settings: Sequence[Setting]) -> dict:
    """Every setting's value: from the file where present, else its default."""
    values = defaults_of(settings)
    values.update(read_settings(load_yaml_mapping(path), settings, str(path)))
    return values


BASE_KEY = "_BASE_"  # detectron2: the file this one overrides
MAX_BASE_DEPTH = 10


def read_config_chain(path: str | Path, settings: Sequence[Setting]) -> tuple[dict, list[Path]]:
    """detectron2-style configs: the file overrides its `_BASE_`, which overrides its own, ...

    A base that is not on disk ends the chain (a partial checkout: the defaults fill in); a
    value is checked in the file that sets it, so the line names that file.
    """
    chain, trees = [Path(path)], [load_yaml_mapping(path)]
    while True:
        base = trees[-1].get(BASE_KEY)
        if base is None or base == "":
            break
        if not isinstance(base, str):
            raise UserError(f"{chain[-1]}: {BASE_KEY} is {base!r}, expected a file name")
        base_path = (chain[-1].parent / base).resolve()
        if not base_path.is_file():
            break
        if base_path in (p.resolve() for p in chain):
            raise UserError(f"{chain[-1]}: {BASE_KEY} {base} leads back to {base_path.name} (a loop)")
        if len(chain) > MAX_BASE_DEPTH:
            raise UserError(f"{chain[0]}: more than {MAX_BASE_DEPTH} {BASE_KEY} files in a chain")
        chain.append(base_path)
        trees.append(load_yaml_mapping(base_path))
    values = defaults_of(settings)
    for config_file, tree in reversed(list(zip(chain, trees))):  # bases first, the named file last
        values.update(read_settings(tree, settings, str(config_file)))
    return values, chain


# ---- command-line values ------------------------------------------------------------------

def check_flag(flag: str, value, kind: str = "int", **bounds):
    """A command-line value against the same rules: '--static-batch 0: expected an integer >= 1'."""
    setting = Setting(flag, kind, **bounds)
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if setting._item(item) is MISSING:
            shown = " ".join(map(str, values))
            raise UserError(f"{flag} {shown}: expected {setting.describe()}")
    return value


def read_guide_config(path: str | Path | None, settings: Sequence[Setting], upstream: str) -> tuple[dict, list[Path]]:
    """The config a guide passes from an upstream clone: its settings (and `_BASE_` chain) when
    the file is there; when it is not (no clone, which this project does not need), the values
    built into the pack, said in one warning line naming the file, so the guide's command runs
    as written."""
    if path is None:
        return defaults_of(settings), []
    if not Path(path).is_file():
        print(f"[WARNING] {path}: config file not found (no {upstream} clone here); using the values "
              "this pack builds in, the published config's", file=sys.stderr)
        return defaults_of(settings), []
    return read_config_chain(path, settings)
