"""One extraction run, as the library does it: inputs -> checks -> models -> records + a summary.

`extract(inputs, output, options)` is what `yt8m extract` (and `yt8m.extract`) runs. Before any
model is loaded it checks the options and the output path, collects the inputs, attaches ids and
labels, drops ids already written (`resume`) and probes every file; bad files are reported at
once and, when nothing is left to extract, no model is loaded at all. Only a run that extracted
at least one video writes records (see `ExtractSummary`); a run where every file failed leaves
the output as it was.

Output path rule: an `output` that is an existing folder, or that ends with a path separator,
means "write into this folder": the file is `<folder>/<name>.tfrecord`, `<name>` being the stem
of the single input file or the name of the single input folder (`features` for several inputs).
Anything else is the record file itself (with `shard_size`: the pattern of the shard names).

The job prints nothing: `progress` receives `JobMessage`s (info / warning / error lines),
one `JobStarted` when extraction begins and the pipeline's `ExtractProgress` events.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from yt8m.core import MAX_FRAMES, WEIGHTS_RANDOM, WEIGHTS_YT8M, Yt8mError, weights_kind
from yt8m.data import records, shards
from yt8m.data.vocabulary import label_map_path_for, write_label_map
from yt8m.extractor import video as video_lib
from yt8m.extractor.backbones import FLOAT32, FeatureModels, check_precision, load_feature_models
from yt8m.extractor.inputs import ID_FROM_STEM, VideoInput, check_id_source, make_inputs, scan_inputs
from yt8m.extractor.pipeline import (
    AUDIO_MISSING,
    ExtractProgress,
    ExtractResult,
    FeatureExtractor,
    check_options,
)
from yt8m.extractor.video import DEFAULT_FPS, DEFAULT_SAMPLING

RECORD_SUFFIX = ".tfrecord"
DEFAULT_OUTPUT_NAME = "features"  # the file name in an output folder when several inputs are given
YT8M_FPS = 1.0
INFO = "info"
WARNING = "warning"
ERROR = "error"


@dataclass
class ExtractOptions:
    """Every setting of an extraction run (the library's names; the CLI maps its flags onto these)."""

    weights: str = WEIGHTS_YT8M
    models_dir: str | os.PathLike | None = None  # str keeps gs:// paths (Path would make gs:/)
    fps: float = DEFAULT_FPS
    max_frames: int = MAX_FRAMES
    sampling: str = DEFAULT_SAMPLING
    no_audio: bool = False
    rgb_pca: str | os.PathLike | None = None
    audio_pca: str | os.PathLike | None = None
    precision: str = FLOAT32
    batch_size: int | None = None  # None: sized for the device the networks run on (pipeline.sized_for_device)
    workers: int | None = None
    shard_size: int | None = None
    resume: bool = False
    overwrite: bool = False
    labels: str | os.PathLike | None = None
    labels_from_folders: bool = False
    label_map: str | os.PathLike | None = None
    id_from: str = ID_FROM_STEM
    trust_model: bool = False  # run a user's SavedModel (hub:) even if its graph touches files / network
    # --- Beam runner (yt8m/extractor/beam.py): None = this process; else a Beam runner's name ---
    runner: str | None = None
    beam_options: tuple[str, ...] = ()  # Beam pipeline options, `key=value` or `--key=value`


@dataclass(frozen=True)
class JobMessage:
    """A line for the user: `level` is info, warning or error (one bad file, named)."""

    level: str
    text: str


@dataclass(frozen=True)
class JobStarted:
    """Sent once, when the models are loaded and extraction begins."""

    videos: int  # inputs left to extract (after resume and probing)


@dataclass
class ExtractSummary:
    """What a run did: the files written, counts per outcome, errors (one line each) and warnings."""

    output: Path
    written: list[Path] = field(default_factory=list)
    videos: int = 0  # extracted in this run
    frames: int = 0
    seconds: float = 0.0
    failed: int = 0
    capped: int = 0  # videos cut by max_frames
    audio_missing: int = 0
    skipped: int = 0  # already in the output (resume)
    unlabelled: int = 0
    skipped_by_extension: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    label_map: Path | None = None
    weights: str = ""
    models_loaded: bool = False
    elapsed: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per start-up stage (benchmarks)
    first_input_time: float | None = None  # time.time() when the first frame entered a network

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def add(self, result: ExtractResult) -> None:
        if not result.ok:
            self.failed += 1
            self.errors.append(result.error or f"{result.input.path}: failed")
            return
        self.videos += 1
        self.frames += result.frames
        self.seconds += result.seconds
        self.capped += int(result.capped)
        self.audio_missing += int(result.audio == AUDIO_MISSING)


def resolve_output(output: str | os.PathLike, inputs: list[str | os.PathLike]) -> Path:
    """The record file a run writes (see the module docstring for the folder rule)."""
    text = os.fspath(output)
    if not text:
        raise Yt8mError("output is empty: give a record file (OUT.tfrecord) or a folder")
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        name = DEFAULT_OUTPUT_NAME
        if len(inputs) == 1:
            single = Path(os.fspath(inputs[0]))
            if single.is_dir():
                name = single.resolve().name or DEFAULT_OUTPUT_NAME
            elif single.is_file():
                name = single.stem
        return path / f"{name}{RECORD_SUFFIX}"
    if path.exists() and not path.is_file():
        raise Yt8mError(f"{path}: exists and is not a regular file; give a record file or a folder")
    return path


def make_options(options: ExtractOptions | None = None, **overrides: Any) -> ExtractOptions:
    """`options` (or the defaults) with `overrides` applied; an unknown name is a Yt8mError."""
    known = {f.name for f in dataclasses.fields(ExtractOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise Yt8mError(f"unknown extract option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(options or ExtractOptions(), **overrides)


def check_extract_options(options: ExtractOptions) -> None:
    """Every option error, as one line naming the parameter, before anything is read."""
    check_options(options.fps, options.max_frames, options.batch_size, options.workers)
    video_lib.check_sampling(options.sampling)
    weights_kind(options.weights)
    check_precision(options.precision)
    check_id_source(options.id_from)
    if options.shard_size is not None and options.shard_size < 1:
        raise Yt8mError(f"shard_size must be >= 1, got {options.shard_size}")
    if options.overwrite and options.resume:
        raise Yt8mError("give either overwrite=True or resume=True, not both")


def _check_record_fields(
    items: list[VideoInput], num_classes: int | None, summary: ExtractSummary, say: Callable[[str, str], None]
) -> list[VideoInput]:
    """The inputs whose id and labels a record can hold; each other one is reported now (not mid-run)."""
    kept = []
    for item in items:
        try:
            records.check_video_id(item.video_id, str(item.path))
            records.check_labels(item.labels, str(item.path), num_classes=num_classes)
        except Yt8mError as error:
            summary.failed += 1
            summary.errors.append(str(error))
            say(ERROR, str(error))
            continue
        kept.append(item)
    return kept


def _probe(items: list[VideoInput], summary: ExtractSummary, say: Callable[[str, str], None]) -> list[VideoInput]:
    """The inputs that open and hold a decodable video stream; each other one is reported now."""
    kept = []
    for item in items:
        found = video_lib.probe(item.path)
        if not found.ok:
            summary.failed += 1
            summary.errors.append(found.message)
            say(ERROR, found.message)
            continue
        has_audio = found.has_audio if found.audio_problem is None else None
        kept.append(dataclasses.replace(item, has_audio=has_audio))
    return kept


def extract(
    inputs: Iterable[str | os.PathLike] | str | os.PathLike,
    output: str | os.PathLike,
    options: ExtractOptions | None = None,
    progress: Callable[[Any], None] | None = None,
    models: FeatureModels | None = None,
    **kwargs: Any,
) -> ExtractSummary:
    """Extract YT8M features from `inputs` (files, folders, globs) into `output`; see the module doc.

    `kwargs` override fields of `options` (e.g. `weights="random", max_frames=60`). Returns the
    summary; bad files are in `summary.errors` (the others are written). User mistakes in the
    options, the inputs or the output raise Yt8mError before any work. `models` reuses networks
    a caller already loaded (their weights must be `options.weights`); else they are loaded here,
    only when there is something to extract.
    """
    started = time.perf_counter()
    options = make_options(options, **kwargs)
    check_extract_options(options)
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if options.runner is not None:  # beam.py builds on this module, so the choice is made above it
        raise Yt8mError(
            f"runner={options.runner}: yt8m.extractor.job.extract runs in this process; call "
            "yt8m.extractor.beam.extract for a Beam runner (what `yt8m extract --runner` does)"
        )
    out = resolve_output(output, paths)
    summary = ExtractSummary(output=out, weights=options.weights)

    def say(level: str, text: str) -> None:
        if level == WARNING:
            summary.warnings.append(text)
        if progress is not None:
            progress(JobMessage(level, text))

    shards.check_output(out, options.shard_size, overwrite=options.overwrite, resume=options.resume)
    scan = scan_inputs(paths)
    summary.skipped_by_extension = dict(scan.skipped)
    map_path = label_map_path_for(out)
    existing_map = map_path if options.resume and options.label_map is None and map_path.is_file() else None
    labelled = make_inputs(
        scan.found, options.id_from, options.labels, options.labels_from_folders, options.label_map, existing_map
    )
    summary.unlabelled = labelled.unlabelled
    if labelled.unlabelled:
        say(WARNING, f"{options.labels}: has no row for {labelled.unlabelled} of {len(labelled.items)} video(s); "
                     "they get no labels")
    items = labelled.items
    if options.resume:
        done = shards.existing_ids(out)
        summary.skipped = sum(1 for item in items if item.video_id in done)
        items = [item for item in items if item.video_id not in done]
        if summary.skipped:
            say(INFO, f"resuming: {summary.skipped} video(s) already in {out.name}, skipping them")
    names = labelled.label_map
    items = _check_record_fields(items, len(names) if names else None, summary, say)
    items = _probe(items, summary, say)
    summary.timings["inputs (scan, labels, probe)"] = time.perf_counter() - started
    if not items:
        if options.resume:  # nothing new: still finish what an interrupted earlier run completed
            summary.written = shards.ShardWriter(out, shard_size=options.shard_size, resume=True).close()
        summary.elapsed = time.perf_counter() - started
        return summary

    if options.fps != YT8M_FPS:
        say(WARNING, f"fps={options.fps:g}: YouTube-8M records have 1 frame per second; "
                     "models trained on YT8M expect that")
    writer = shards.ShardWriter(out, shard_size=options.shard_size, resume=options.resume, overwrite=options.overwrite)
    loading = time.perf_counter()
    try:
        if models is not None and models.weights != options.weights:
            raise Yt8mError(f"models were loaded with weights={models.weights} but weights={options.weights}")
        models = models or load_feature_models(
            weights=options.weights,
            models_dir=options.models_dir,
            precision=options.precision,
            audio=not options.no_audio,
            rgb_pca_path=options.rgb_pca,
            audio_pca_path=options.audio_pca,
            trust_model=options.trust_model,
        )
        summary.models_loaded = True
        summary.timings["models (wall)"] = time.perf_counter() - loading
        summary.timings.update({f"  {stage}": seconds for stage, seconds in models.timings.items()})
        summary.weights = models.weights
        for message in models.warnings:
            say(WARNING, message)
        extractor = FeatureExtractor(
            models, fps=options.fps, max_frames=options.max_frames, sampling=options.sampling,
            audio=not options.no_audio, batch_size=options.batch_size, workers=options.workers,
        )
        if progress is not None:
            progress(JobStarted(len(items)))
        for result in extractor.extract(items, progress=progress):
            summary.add(result)
            for warning in result.warnings:
                say(WARNING, warning)
            if result.ok:
                writer.write(result.features)
            else:
                say(ERROR, result.error or f"{result.input.path}: failed")
        summary.first_input_time = extractor.stats.first_input_time
    except BaseException:
        writer.abort()
        raise
    summary.written = writer.close()
    if summary.videos and labelled.label_map_built and labelled.label_map is not None:
        summary.label_map = write_label_map(map_path, labelled.label_map)
        say(INFO, f"label map: {len(labelled.label_map)} classes from folder names, saved to {map_path}")
    summary.elapsed = time.perf_counter() - started
    return summary


def is_random(summary: ExtractSummary) -> bool:
    """Whether the run's features were made with random weights (never YouTube-8M features)."""
    return summary.weights == WEIGHTS_RANDOM


__all__ = [
    "ExtractOptions", "ExtractSummary", "JobMessage", "JobStarted", "ExtractProgress", "extract",
    "make_options", "resolve_output",
]
