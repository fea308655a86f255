"""One-graph ensembles: several bundles merged, with weights, into ONE bundle and ONE SavedModel.

The 2018 first place's `graph_ensemble.py` imported several inference graphs under
`model_{i}` scopes, connected them to one input (`[N, 300, 1152]` frames and `num_frames`) and
summed their predictions times weights that must add up to 1. `merge` does the same on bundles:
members may be trained, EMA-stage, quantized or merged bundles (a merged member is flattened into
its members, weights multiplied), of different architectures and even different `max_frames`,
as long as their inputs agree (feature names and sizes, quantization range, video- or frame-level,
segment mode, classes and class names). Weights are normalised to sum 1, so the merged scores are
the weighted mean of the members'.

A merged bundle is a directory with `config.json` (kind `merged`; model `MergedEnsemble`; the
members and weights in its hparams; `max_frames` the largest of the members'), one quantized
bundle per member under `members/NN/` (a float member is stored as method `float32`: its weights
unchanged), the label map when the members have one, and by default `export/`, the SavedModel with
the serving signatures of `yt8m export`. Each member sees the first `max_frames` of its own frames,
as its own reader would give them.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.bundle import EXPORT_DIR, USE_VIDEOS, LoadedModel, ModelBundle, register_kind
from yt8m.classifier.compact.kinds import KIND_MERGED, KIND_QUANTIZED
from yt8m.classifier.compact.quantize import (
    METHOD_FLOAT32,
    _check_out_dir,
    _variable_path,
    encode,
    float_variables,
    load_quantized_model,
    read_manifest,
    write_quantized,
)
from yt8m.classifier.compact.size import size_report
from yt8m.classifier.config import ModelConfig, TrainingSettings
from yt8m.classifier.export import export_model
from yt8m.core import Yt8mError
from yt8m.data.files import atomic_path
from yt8m.data.vocabulary import LABEL_MAP_FILENAME, write_label_map

MERGED_MODEL_NAME = "MergedEnsemble"
MEMBERS_DIR = "members"
WEIGHT_SUM_TOLERANCE = 1e-4  # the seed's check that the weights add up to 1


@dataclass
class Member:
    """One member of a merge: a bundle and its weight."""

    bundle: ModelBundle
    weight: float


@dataclass
class MergeResult:
    out_dir: Path
    members: list[dict]
    export_dir: Path | None


def normalised_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Weights that sum to 1 (equal ones when None); refused: wrong count, negative, not finite, all zero."""
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise Yt8mError(f"`weights` has {len(weights)} values for {count} models")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise Yt8mError(f"`weights` must be finite and >= 0, got {weights}")
    total = sum(weights)
    if total <= 0:
        raise Yt8mError("`weights` must not all be zero")
    return [w / total for w in weights]


def _flatten(bundles: Sequence[ModelBundle], weights: Sequence[float]) -> list[Member]:
    """Members with merged bundles replaced by their own members (weights multiplied)."""
    members: list[Member] = []
    for bundle, weight in zip(bundles, weights):
        if bundle.kind == KIND_MERGED:
            for entry in bundle.config.hparams["members"]:
                inner = ModelBundle.open(bundle.path / entry["path"])
                members.append(Member(inner, weight * float(entry["weight"])))
        else:
            members.append(Member(bundle, weight))
    return members


def check_inputs_agree(members: Sequence[Member]) -> list[str] | None:
    """Refuse members whose inputs or outputs differ; the shared class names (None: YT8M's vocabulary)."""
    first = members[0].bundle
    spec = first.config.feature_spec.to_dict()
    spec.pop("max_frames", None)
    names = first.label_names()
    for member in members[1:]:
        bundle, config = member.bundle, member.bundle.config
        other = config.feature_spec.to_dict()
        other.pop("max_frames", None)
        problems = []
        if other != spec:
            problems.append(f"features {other} vs {spec}")
        if config.num_classes != first.config.num_classes:
            problems.append(f"{config.num_classes} classes vs {first.config.num_classes}")
        if config.video_level != first.config.video_level:
            problems.append("video-level vs frame-level model")
        if config.segments != first.config.segments:
            problems.append(f"segment mode {config.segments} vs {first.config.segments}")
        normalised, first_normalised = config.training.l2_normalize_video_inputs, first.config.training.l2_normalize_video_inputs
        if config.video_level and normalised != first_normalised:
            problems.append(f"l2_normalize_video_inputs {normalised} vs {first_normalised}")
        if not problems and bundle.label_names() != names:
            problems.append("other class names (label_map.txt)")
        if problems:
            raise Yt8mError(f"{bundle.path}: cannot be merged with {first.path}: {'; '.join(problems)}")
    return names


def merge(
    models: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    weights: Sequence[float] | None = None,
    *,
    export: bool = True,
    overwrite: bool = False,
    max_size: str | int | None = None,
) -> MergeResult:
    """Merge 2+ bundles into one `merged` bundle at `out_dir` (and its SavedModel under `export/`).

    Scores of the result equal sum_i w_i * scores_i with the weights normalised to sum 1.
    Everything is checked before anything is written; the bundle is written under a temporary
    name and renamed when complete (the export included). With `max_size` (e.g. `1GB`) a SavedModel
    larger than that is refused, naming its largest parts, and nothing is left at `out_dir`.
    """
    if len(models) < 2:
        raise Yt8mError(f"`models`: merging needs 2 or more bundles, got {len(models)}")
    bundles = [ModelBundle.open(path, use=USE_VIDEOS) for path in models]
    members = _flatten(bundles, normalised_weights(weights, len(bundles)))
    names = check_inputs_agree(members)
    out = _check_out_dir(out_dir, models[0], overwrite)
    for path in models:
        if Path(path).resolve() == out.resolve():
            raise Yt8mError(f"{out}: the output must not replace one of its members")
    first = members[0].bundle.config
    spec = replace(first.feature_spec, max_frames=max(m.bundle.config.feature_spec.max_frames for m in members))
    weights_of = {m.bundle.config.feature_weights for m in members}
    entries = []
    with atomic_path(out) as staging:
        staging.mkdir(parents=True)
        for index, member in enumerate(members):
            relative = f"{MEMBERS_DIR}/{index:02d}"
            method = _store_member(member.bundle, staging / relative)
            entries.append(
                {
                    "path": relative,
                    "weight": member.weight,
                    "model": member.bundle.config.model,
                    "method": method,
                    "max_frames": member.bundle.config.feature_spec.max_frames,
                    "source": str(member.bundle.path),
                }
            )
        config = ModelConfig(
            model=MERGED_MODEL_NAME,
            hparams={"members": entries},
            feature_spec=spec,
            num_classes=first.num_classes,
            video_level=first.video_level,
            # the members' inputs agree (`check_inputs_agree`), their normalisation included
            training=TrainingSettings(l2_normalize_video_inputs=first.training.l2_normalize_video_inputs),
            segments=first.segments,
            feature_weights=weights_of.pop() if len(weights_of) == 1 else None,
            kind=KIND_MERGED,
        )
        config.save(staging)
        if names is not None:
            write_label_map(staging / LABEL_MAP_FILENAME, names)
        if export:
            export_model(staging, staging / EXPORT_DIR)
            if max_size is not None:
                report = size_report(staging / EXPORT_DIR, max_size)
                report.path = out / EXPORT_DIR
                report.check_budget()
    return MergeResult(out_dir=out, members=entries, export_dir=out / EXPORT_DIR if export else None)


def _store_member(bundle: ModelBundle, target: Path) -> str:
    """Put one member under `target` as a quantized bundle; returns its method."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if bundle.kind == KIND_QUANTIZED:
        shutil.copytree(bundle.path, target, ignore=shutil.ignore_patterns(EXPORT_DIR))
        return str(read_manifest(target)["method"])
    loaded = bundle.load()
    if not hasattr(loaded.model, "stateless_call"):
        raise Yt8mError(f"{bundle.path}: a {bundle.kind} bundle cannot be a member of a merge")
    variables = float_variables(loaded.model)
    encoded = [encode(np.asarray(v.numpy()), METHOD_FLOAT32) for v in variables]
    write_quantized(target, bundle, loaded, encoded, [_variable_path(v) for v in variables], METHOD_FLOAT32, 0)
    return METHOD_FLOAT32


# ----------------------------------------------------------------------------- loading


_CLASSES: dict[str, type] = {}


def _merged_model_class() -> type:
    """The `MergedModel` class: a `tf.Module` summing its members' weighted scores."""
    if "merged" in _CLASSES:
        return _CLASSES["merged"]
    tf = import_tensorflow_quietly()

    class MergedModel(tf.Module):
        """Members called on one input (each on its own first `max_frames` frames), scores weighted and summed."""

        def __init__(self, members: Sequence, weights: Sequence[float], max_frames: Sequence[int], video_level: bool) -> None:
            super().__init__(name="merged_model")
            self.members = list(members)
            self._weights = [float(w) for w in weights]
            self._max_frames = [int(t) for t in max_frames]
            self._video_level = bool(video_level)

        # Plain Python over Python lists: AutoGraph has nothing to convert here, and its cache of
        # converted methods was seen to hand back another method for this one (TypeError, order-dependent).
        @tf.autograph.experimental.do_not_convert
        def __call__(self, inputs, training=False):
            frames, num_frames = inputs
            total = None
            for member, weight, length in zip(self.members, self._weights, self._max_frames):
                if self._video_level:
                    scores = member((frames, num_frames), training=False)
                else:
                    mine = (frames[:, :length], tf.minimum(tf.cast(num_frames, tf.int32), length))
                    scores = member(mine, training=False)
                scores = tf.cast(scores, tf.float32) * weight
                total = scores if total is None else total + scores
            return total

    _CLASSES["merged"] = MergedModel
    return MergedModel


def load_merged_model(bundle: ModelBundle):
    """The `MergedModel` of a merged bundle."""
    entries = bundle.config.hparams.get("members") or []
    if len(entries) < 1:
        raise Yt8mError(f"{bundle.config_path}: a merged bundle without members")
    members, weights, lengths = [], [], []
    for entry in entries:
        directory = bundle.path / entry["path"]
        member_config = ModelConfig.load(directory)
        members.append(load_quantized_model(directory, member_config))
        weights.append(float(entry["weight"]))
        lengths.append(member_config.feature_spec.max_frames)
    return _merged_model_class()(members, weights, lengths, bundle.config.video_level)


def _load_merged(bundle: ModelBundle, checkpoint: str | None, use_ema: bool) -> LoadedModel:
    """The loader of `merged` bundles (one set of weights: `checkpoint` and `use_ema` do not apply)."""
    if checkpoint is not None:
        raise Yt8mError(f"{bundle.path}: a merged bundle has no checkpoints to choose from")
    return LoadedModel(model=load_merged_model(bundle), config=bundle.config, step=0, checkpoint=None)


register_kind(KIND_MERGED, _load_merged)
