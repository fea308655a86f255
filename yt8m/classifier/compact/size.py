"""Size reports and budgets: parameters and bytes on disk per variable group, total against a budget.

The 2018 challenge took one model of at most 1 GB. `size_report` measures what a model needs on
disk, for any bundle (trained: config + the latest checkpoint; quantized: weights.npz; merged:
its members; EMA-stage: as trained) or a SavedModel export (saved_model.pb + variables + assets),
and splits it into groups:

- trained / EMA-stage bundles: `model/<layer>` (the weights), `optimizer` (Adam's moments and
  step), `ema` (the moving averages), from the checkpoint's own variable names;
- quantized bundles: one group per layer of the model (codes + codebooks, or float values);
- merged bundles: the same per member (`members/NN/<layer>`);
- SavedModel exports: `graph` (saved_model.pb), one group per top-level object of the saved
  variables (a merged export: per member) and `assets`.

Sizes are decimal (`1GB` = 10^9 bytes, the challenge's unit) or binary (`1GiB` = 2^30).
`export_within_budget` exports a bundle and refuses, naming the largest parts, when the
SavedModel is larger than a budget (nothing is left at the target then).
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.bundle import ModelBundle, weights_filled_by_a_checkpoint
from yt8m.classifier.compact.kinds import KIND_MERGED, KIND_QUANTIZED
from yt8m.classifier.compact.quantize import (
    MANIFEST_FILENAME,
    WEIGHTS_FILENAME,
    _variable_path,
    float_variables,
    read_manifest,
)
from yt8m.classifier.config import CONFIG_FILENAME
from yt8m.classifier.export import ASSETS_DIR, METADATA_FILENAME, export_model
from yt8m.core import Yt8mError
from yt8m.data.files import remove_path, replace_path, temporary_name
from yt8m.data.vocabulary import LABEL_MAP_FILENAME

CHALLENGE_BUDGET = "1GB"  # the 2018 challenge's limit on the uploaded model
SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
LARGEST_NAMED = 3  # parts named when a budget is exceeded
SAVED_MODEL_FILE = "saved_model.pb"
VARIABLES_PREFIX = "variables/variables"
GRAPH_PART = "graph (saved_model.pb)"
ASSETS_PART = "assets"
OTHER_PART = "other files"
EMA_GROUP = "ema"  # the checkpoint entry of the moving averages
EMA_PART = "ema (moving averages)"
OPTIMIZER_PART = "optimizer state and counters"
_ATTRIBUTE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_CHECKPOINT_BOOKKEEPING = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter")
KIND_EXPORT = "export"


@dataclass
class SizePart:
    """One group of variables (or files): its parameter count and bytes on disk."""

    name: str
    parameters: int = 0
    bytes: int = 0


@dataclass
class SizeReport:
    """What a model needs on disk: total bytes, parameters, the parts, and a budget when one was given."""

    path: Path
    kind: str
    model: str
    parameters: int
    total_bytes: int
    parts: list[SizePart] = field(default_factory=list)
    budget: int | None = None

    @property
    def within_budget(self) -> bool:
        return self.budget is None or self.total_bytes <= self.budget

    def largest(self, count: int = LARGEST_NAMED) -> list[SizePart]:
        return sorted(self.parts, key=lambda part: (-part.bytes, part.name))[:count]

    def check_budget(self) -> None:
        """Raise `Yt8mError` naming the largest parts when the total exceeds the budget."""
        if self.within_budget:
            return
        parts = ", ".join(f"{part.name} {format_size(part.bytes)}" for part in self.largest())
        raise Yt8mError(
            f"{self.path}: {format_size(self.total_bytes)} exceeds the budget of {format_size(self.budget)} "
            f"(largest parts: {parts}); quantize it (`method=uniform8`) or merge fewer models"
        )


def parse_size(text: str | int) -> int:
    """Bytes from `1GB`, `500MB`, `1.5GiB` or a plain number of bytes (decimal and binary units)."""
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        match = _SIZE_RE.match(str(text))
        if not match or match.group(2).upper() not in SIZE_UNITS:
            raise Yt8mError(f"`max_size`: {text!r} is not a size (e.g. 1GB, 500MB, 1.5GiB or bytes)")
        value, unit = float(match.group(1)), match.group(2).upper()
    size = int(round(value * SIZE_UNITS[unit]))
    if size <= 0:
        raise Yt8mError(f"`max_size` must be > 0, got {text!r}")
    return size


def format_size(size: int | None) -> str:
    """A short decimal size (`1.23 MB`)."""
    if size is None:
        return "-"
    for unit in ("TB", "GB", "MB", "KB"):
        if abs(size) >= SIZE_UNITS[unit]:
            return f"{size / SIZE_UNITS[unit]:.2f} {unit}"
    return f"{size} B"


# ----------------------------------------------------------------------------- measuring


def _file_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else _file_size(path)


def _layer_group(path: str) -> str:
    """A variable path's layer (`NetVLADModelLF/vlad_0/assign/kernel` -> `vlad_0`)."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 else parts[-1].split(":")[0]


def _checkpoint_parts(prefix: str, group_of) -> list[SizePart]:
    """Per-group parameters and bytes of a TF checkpoint's tensors (bookkeeping entries left out)."""
    tf = import_tensorflow_quietly()
    reader = tf.train.load_checkpoint(prefix)
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    parts: dict[str, SizePart] = {}
    for name in sorted(shapes):
        if name.split("/")[0] in _CHECKPOINT_BOOKKEEPING:
            continue
        count = int(np.prod(shapes[name], dtype=np.int64))
        nbytes = count * (tf.as_dtype(dtypes[name]).size if dtypes[name] != tf.string else 1)
        group = group_of(name.removesuffix(_ATTRIBUTE_SUFFIX))
        part = parts.setdefault(group, SizePart(group))
        part.parameters += count
        part.bytes += nbytes
    return list(parts.values())


def _model_parts(model) -> tuple[list[SizePart], int]:
    """Per-layer parameters and float32 bytes of a Keras model's weights; the parameter count."""
    parts: dict[str, SizePart] = {}
    for variable in float_variables(model):
        group = _layer_group(_variable_path(variable))
        part = parts.setdefault(group, SizePart(group))
        count = int(np.prod(variable.shape, dtype=np.int64))
        part.parameters += count
        part.bytes += count * np.dtype(variable.dtype).itemsize
    return list(parts.values()), sum(part.parameters for part in parts.values())


def _training_parts(bundle: ModelBundle) -> tuple[list[SizePart], int]:
    """A checkpoint split into the model's layers, the EMA averages and the optimizer's state.

    (A checkpoint names each weight once, by whichever object reached it first, often the
    optimizer: so the layers come from the model's own variables and the rest by difference.)
    """
    with weights_filled_by_a_checkpoint():  # only the shapes are counted
        parts, parameters = _model_parts(bundle.build_model())
    stored = _checkpoint_parts(str(bundle.latest_checkpoint()), lambda name: name.split("/")[0])
    ema = sum(part.bytes for part in stored if part.name == EMA_GROUP)
    rest = sum(part.bytes for part in stored) - ema - sum(part.bytes for part in parts)
    if ema:
        parts.append(SizePart(EMA_PART, 0, ema))
    if rest > 0:
        parts.append(SizePart(OPTIMIZER_PART, 0, rest))
    return parts, parameters


def _export_group(name: str) -> str:
    parts = [p for p in name.split("/") if p]
    keep = 3 if parts[:2] == ["model", "members"] else 2  # a merged export: one group per member
    return "/".join(parts[:keep])


def _quantized_parts(directory: Path, prefix: str = "") -> tuple[list[SizePart], int]:
    """Per-layer parameters and bytes (of the arrays as stored) of a quantized bundle's weights.npz."""
    manifest = read_manifest(directory)
    stored: dict[str, int] = defaultdict(int)
    with zipfile.ZipFile(directory / WEIGHTS_FILENAME) as archive:
        for info in archive.infolist():
            stored[info.filename.split(".", 1)[0]] += info.compress_size
    parts: dict[str, SizePart] = {}
    parameters = 0
    for entry in manifest["variables"]:
        group = prefix + _layer_group(entry["path"])
        part = parts.setdefault(group, SizePart(group))
        count = int(np.prod(entry["shape"], dtype=np.int64))
        part.parameters += count
        part.bytes += stored[f"{int(entry['index']):04d}"]
        parameters += count
    return list(parts.values()), parameters


def _bundle_files(bundle: ModelBundle) -> list[Path]:
    """The files a bundle's model loads from (config, label map, the latest checkpoint or the weights)."""
    files = [bundle.config_path, bundle.path / LABEL_MAP_FILENAME]
    if bundle.kind == KIND_QUANTIZED:
        files += [bundle.path / WEIGHTS_FILENAME, bundle.path / MANIFEST_FILENAME]
    elif bundle.kind == KIND_MERGED:
        for entry in bundle.config.hparams.get("members", []):
            files += _bundle_files(ModelBundle.open(bundle.path / entry["path"]))
    else:
        checkpoint = bundle.latest_checkpoint()
        if checkpoint is None:
            raise Yt8mError(f"{bundle.path}: no checkpoint to measure (train a model there first)")
        files += sorted(Path(checkpoint).parent.glob(Path(checkpoint).name + ".*"))
    return [f for f in files if f.is_file()]


def _with_other(parts: list[SizePart], total: int) -> list[SizePart]:
    rest = total - sum(part.bytes for part in parts)
    return parts + ([SizePart(OTHER_PART, 0, rest)] if rest > 0 else [])


def size_report(path: str | os.PathLike, max_size: str | int | None = None) -> SizeReport:
    """The size report of a bundle or a SavedModel export (`max_size`, e.g. `1GB`, sets the budget)."""
    path = Path(path)
    budget = parse_size(max_size) if max_size is not None else None
    if (path / SAVED_MODEL_FILE).is_file():
        report = _export_report(path)
    elif ModelBundle.is_bundle(path):
        report = _bundle_report(ModelBundle.open(path))
    else:
        raise Yt8mError(f"{path}: neither a model bundle ({CONFIG_FILENAME}) nor a SavedModel ({SAVED_MODEL_FILE})")
    report.budget = budget
    return report


def _bundle_report(bundle: ModelBundle) -> SizeReport:
    total = sum(_file_size(f) for f in _bundle_files(bundle))
    if bundle.kind == KIND_QUANTIZED:
        parts, parameters = _quantized_parts(bundle.path)
    elif bundle.kind == KIND_MERGED:
        parts, parameters = [], 0
        for entry in bundle.config.hparams.get("members", []):
            mine, count = _quantized_parts(bundle.path / entry["path"], prefix=f"{entry['path']}/")
            parts += mine
            parameters += count
    else:
        parts, parameters = _training_parts(bundle)
    return SizeReport(bundle.path, bundle.kind, bundle.config.model, parameters, total, _with_other(parts, total))


def _export_report(path: Path) -> SizeReport:
    total = _tree_size(path)
    parts = [SizePart(GRAPH_PART, 0, _file_size(path / SAVED_MODEL_FILE))]
    parameters = 0
    if (path / "variables" / "variables.index").is_file():
        variables = _checkpoint_parts(str(path / VARIABLES_PREFIX), _export_group)
        parts += variables
        parameters = sum(part.parameters for part in variables)
    parts.append(SizePart(ASSETS_PART, 0, _tree_size(path / ASSETS_DIR)))
    model = "SavedModel"
    metadata = path / ASSETS_DIR / METADATA_FILENAME
    if metadata.is_file():
        model = _export_model_name(metadata)
    return SizeReport(path, KIND_EXPORT, model, parameters, total, _with_other(parts, total))


def _export_model_name(metadata: Path) -> str:
    try:
        return str(json.loads(metadata.read_text(encoding="utf-8"))["config"]["model"])
    except (OSError, ValueError, KeyError):
        return "SavedModel"


# ----------------------------------------------------------------------------- export under a budget


def export_within_budget(
    train_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    max_size: str | int,
    *,
    overwrite: bool = False,
    **export_options,
) -> SizeReport:
    """Export `train_dir` to `out_dir` unless the SavedModel exceeds `max_size` (then `Yt8mError` naming
    the largest parts, and `out_dir` is left as it was)."""
    budget = parse_size(max_size)
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not (overwrite and (out / ASSETS_DIR / METADATA_FILENAME).is_file()):
            reason = "pass `overwrite=True` to replace it" if overwrite is False else "not an earlier yt8m export"
            raise Yt8mError(f"{out}: already exists ({reason})")
    trial = temporary_name(out).with_name(temporary_name(out).name + ".sizing")
    remove_path(trial)
    try:
        export_model(train_dir, trial, **export_options)
        report = size_report(trial)
        report.budget = budget
        report.path = out
        report.check_budget()
        replace_path(trial, out)
    finally:
        remove_path(trial)
    return report


def describe(parts: Iterable[SizePart]) -> list[tuple[str, int, int]]:
    """(name, parameters, bytes) rows, largest first."""
    return [(p.name, p.parameters, p.bytes) for p in sorted(parts, key=lambda p: (-p.bytes, p.name))]
