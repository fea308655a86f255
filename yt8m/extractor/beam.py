"""Feature extraction as an Apache Beam pipeline: `yt8m extract INPUTS -o OUT --runner NAME`.

The same records as the in-process run, spread over the workers of a Beam runner (DirectRunner or
PrismRunner on this machine; DataflowRunner, FlinkRunner, SparkRunner on a cluster). The driver
finds the inputs (local paths by the local rules, `gs://` / `s3://` / ... through Beam's
FileSystems, and `OUT-errors.csv` files of earlier runs), gives each video its id and labels
exactly as the local run does (a label map built from folder names is written once, here), and
runs:

    Create(videos) -> Reshuffle -> ParDo(ExtractVideos) -> WriteToTFRecord  OUT-00000-of-000NN.tfrecord
                                                       \\-> errors ->  OUT-errors.csv (path,reason)

`ExtractVideos` loads the feature models once per worker process in `setup` (shared by the
process's threads through `beam.utils.shared.Shared`) and sends the videos of a bundle through
one `FeatureExtractor`, which batches frames across them as the local run does (on a GPU when
the worker has one: the same code path). A remote video is copied to a local temporary file
just before it is decoded (OpenCV and PyAV read local files) and removed as soon as it is done.
A file that fails becomes a row of the errors CSV and a count in the summary, never a failed
job. The records are the local run's, byte for byte and id by id; which shard holds a record is
the runner's choice.

Apache Beam is the optional `beam` extra: importing this module without it raises a one-line
`Yt8mError` saying how to install it. Nothing else in yt8m imports this module at start-up.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import hashlib
import io
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from yt8m.core import WEIGHTS_RANDOM, Yt8mError, weights_kind

BEAM_INSTALL_HINT = 'pip install "yt8m[beam]"'
try:
    # Beam's GCP module logs a warning through the root logger when the optional Google API
    # client is absent; keep it out of the command's output.
    _root_logger = logging.getLogger()
    _quiet_handler = logging.NullHandler() if not _root_logger.handlers else None
    if _quiet_handler is not None:
        _root_logger.addHandler(_quiet_handler)
    try:
        import apache_beam as beam
        from apache_beam.io.filesystems import FileSystems
        from apache_beam.metrics.metric import MetricsFilter
        from apache_beam.options.pipeline_options import PipelineOptions
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle
        from apache_beam.transforms.window import GlobalWindows
        from apache_beam.utils.shared import Shared
    finally:
        if _quiet_handler is not None:
            _root_logger.removeHandler(_quiet_handler)
    # Unknown pipeline options are reported by yt8m (one warning each), not again by Beam's logger.
    logging.getLogger("apache_beam.options.pipeline_options").setLevel(logging.ERROR)
except ImportError as _missing:
    raise Yt8mError(
        f"runner: Beam runners need Apache Beam ({_missing.name or 'apache_beam'} is not installed): {BEAM_INSTALL_HINT}"
    ) from None

from yt8m.data import records, vocabulary
from yt8m.data import shards as shards_lib
from yt8m.extractor import backbones, job, pipeline
from yt8m.extractor import inputs as inputs_lib
from yt8m.extractor import video as video_lib

LOCAL_RUNNERS = ("DirectRunner", "PrismRunner")
# Beam's DirectRunner tries Prism first, which downloads a binary; yt8m runs the batch engine the
# DirectRunner falls back to (the FnApiRunner, in this process) directly, also offline.
DIRECT_NAMES = ("DirectRunner", "direct", "Direct", "SwitchingDirectRunner")
CLUSTER_RUNNERS = ("DataflowRunner", "FlinkRunner", "SparkRunner")
ERRORS_SUFFIX = "-errors.csv"
ERRORS_HEADER = ("path", "reason")
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"  # Beam's spelling of OUT-00000-of-000NN (yt8m.data.shards)
SHARD_GLOB = "-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]"
RECORDS_PER_SHARD = 1000  # shard count when no shard_size is given: ceil(videos / this)
VIDEOS_PER_GROUP = 64  # videos one FeatureExtractor call takes (frames are batched across them)
COPY_CHUNK_BYTES = 8 << 20
METRICS_NAMESPACE = "yt8m"
COUNTERS = ("videos", "frames", "failed", "audio_missing", "capped")
RECORDS_TAG = "records"
ERRORS_TAG = "errors"
MODELS_CACHE_PREFIX = "yt8m-models-"
STAGING_PREFIX = "yt8m-beam-"  # per-group temporary folder for copies of remote videos
PATH_OPTIONS = ("models_dir", "rgb_pca", "audio_pca", "labels", "label_map")  # may be remote (gs://...)
ERRORS_SHOWN = 20  # failed files printed one per line; the errors CSV has them all
_GLOB_CHARS = "*?["
_MANGLED = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)")


# ----------------------------------------------------------------------------- paths


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` names a file system other than the local one (`gs://`, `s3://`, ...)."""
    scheme = FileSystems.get_scheme(str(path))
    return scheme not in (None, "file")


def _posix(uri: str) -> PurePosixPath:
    """A URI's path part (`gs://b/x/y.mp4` -> `b/x/y.mp4`) for names, stems and parents."""
    return PurePosixPath(uri.split("://", 1)[-1])


def shard_prefix(output: str) -> tuple[str, str]:
    """(prefix, suffix) so that Beam's shard names are `yt8m.data.shards`' OUT-00000-of-000NN.tfrecord."""
    if is_remote(output):
        head, _, name = output.rpartition("/")
        stem, dot, suffix = name.rpartition(".")
        if not dot or not stem:
            return output, ""
        return f"{head}/{stem}", f".{suffix}"
    path = Path(output)
    return str(path.with_suffix("")), path.suffix


def errors_path_for(output: str) -> str:
    """OUT.tfrecord -> OUT-errors.csv (next to the shards)."""
    prefix, _ = shard_prefix(output)
    return prefix + ERRORS_SUFFIX


def label_map_path(output: str) -> str:
    """Where a label map built from folder names is saved: OUT.label_map.txt, as in the local run."""
    if is_remote(output):
        prefix, _ = shard_prefix(output)
        return prefix + vocabulary.LABEL_MAP_SUFFIX
    return str(vocabulary.label_map_path_for(output))


def _write_label_map(target: str, names: list[str]) -> None:
    """The local run's label map writer; through Beam's FileSystems for a remote output."""
    if not is_remote(target):
        vocabulary.write_label_map(target, names)
        return
    with FileSystems.create(target) as handle:
        handle.write("".join(f"{name}\n" for name in names).encode("utf-8"))


def remote_path(path: str | os.PathLike | None) -> str | None:
    """A path option as the user wrote it: `Path("gs://b/m")` had become `gs:/b/m`; undo that."""
    if path is None:
        return None
    text = os.fspath(path)
    match = _MANGLED.match(text)
    if match and is_remote(f"{match[1]}://{text[len(match[0]):]}"):
        return f"{match[1]}://{text[len(match[0]):]}"
    return text


def _read_text(path: str) -> str:
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8-sig")


def copy_to_local(uri: str, target: Path) -> Path:
    """Copy a file Beam's FileSystems can open to a local path (what OpenCV and PyAV need)."""
    with FileSystems.open(uri) as source, open(target, "wb") as sink:
        shutil.copyfileobj(source, sink, COPY_CHUNK_BYTES)
    return target


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class BeamVideo:
    """One pipeline element: where the video is (local path or URI), its record id and labels."""

    uri: str
    video_id: str
    labels: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Found:
    uri: str
    root: str | None  # the folder argument it was found under (its URI), None for a named file
    local: inputs_lib.FoundVideo | None  # set for local files: what the local run's scan found


def is_errors_csv(path: str) -> bool:
    """Whether `path` is an `OUT-errors.csv` of an earlier run (its header is `path,reason`)."""
    if not path.lower().endswith(".csv"):
        return False
    try:
        first = _read_text(path).splitlines()[:1]
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return bool(first) and [cell.strip().lower() for cell in next(csv.reader(first))] == list(ERRORS_HEADER)


def read_errors_csv(path: str) -> list[str]:
    """The failed files listed in an `OUT-errors.csv` (to run them again)."""
    rows = list(csv.reader(io.StringIO(_read_text(path))))
    return [row[0] for row in rows[1:] if row and row[0].strip()]


def _match_remote(text: str) -> list[_Found]:
    """A remote file, folder (every video below it) or glob pattern, matched with FileSystems."""
    if any(ch in text for ch in _GLOB_CHARS):
        matched = FileSystems.match([text])[0].metadata_list
        if not matched:
            raise Yt8mError(f"{text}: pattern matches no files")
        return [_Found(meta.path, None, None) for meta in sorted(matched, key=lambda m: m.path)]
    folder = text.rstrip("/")
    matched = FileSystems.match([folder + "/**"])[0].metadata_list  # a folder: everything below it
    if not matched:
        if not text.endswith("/") and FileSystems.exists(text):
            return [_Found(text, None, None)]
        raise Yt8mError(f"{text}: no such file or folder")
    videos = sorted(
        meta.path for meta in matched
        if video_lib.is_video_file(meta.path)
        and not any(part.startswith(".") for part in PurePosixPath(meta.path[len(folder) + 1:]).parts)
    )
    if not videos:
        raise Yt8mError(f"{text}: folder contains no video files")
    return [_Found(uri, folder, None) for uri in videos]


def find_videos(paths: Iterable[str | os.PathLike], skipped: dict[str, int] | None = None) -> list[_Found]:
    """Files, folders and globs (local by the local rules, or remote) and the files of errors CSVs.

    Local inputs go through the local run's scan (`skipped` collects what its folder scans left
    out, by extension); duplicates are dropped.
    """
    found: list[_Found] = []
    seen: set[str] = set()
    local: list[str] = []

    def add(items: Iterable[_Found]) -> None:
        for item in items:
            key = str(item.local.path.resolve()) if item.local is not None else item.uri
            if key not in seen:
                seen.add(key)
                found.append(item)

    def flush_local() -> None:
        if local:
            scan = inputs_lib.scan_inputs(local)
            for suffix, count in scan.skipped.items():
                if skipped is not None:
                    skipped[suffix] = skipped.get(suffix, 0) + count
            add(_Found(str(v.path), str(v.root) if v.root else None, v) for v in scan.found)
            local.clear()

    for raw in paths:
        text = os.fspath(raw)
        if is_errors_csv(text):
            flush_local()
            listed = read_errors_csv(text)
            if not listed:
                raise Yt8mError(f"{text}: the errors CSV lists no files")
            add(find_videos(listed, skipped))
        elif is_remote(text):
            flush_local()
            add(_match_remote(text))
        else:
            local.append(text)
    flush_local()
    if not found:
        raise Yt8mError("no video files found in the inputs")
    return found


def _as_found(item: _Found) -> inputs_lib.FoundVideo:
    """The local scan's record of a file; for a remote one, its URI's path part as a stand-in path."""
    if item.local is not None:
        return item.local
    root = Path("/", _posix(item.root)) if item.root else None
    return inputs_lib.FoundVideo(Path("/", _posix(item.uri)), root)


def make_videos(found: list[_Found], options: Any) -> tuple[list[BeamVideo], inputs_lib.LabelledInputs]:
    """Ids and labels by the local run's own rules (`make_inputs`); a remote file named directly
    gets its URI as id with `id_from="path"`."""
    labelled = inputs_lib.make_inputs(
        [_as_found(item) for item in found], options.id_from, options.labels, options.labels_from_folders,
        options.label_map,
    )
    videos = []
    for item, video in zip(found, labelled.items):
        video_id = video.video_id
        if item.local is None and item.root is None and options.id_from == inputs_lib.ID_FROM_PATH:
            video_id = item.uri
        videos.append(BeamVideo(item.uri, video_id, tuple(video.labels)))
    inputs_lib.check_unique_ids(inputs_lib.VideoInput(Path(v.uri), v.video_id) for v in videos)
    return videos, labelled


# ----------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class ModelSettings:
    """What `load_feature_models` needs, as plain values that travel to the workers."""

    weights: str
    models_dir: str | None
    precision: str
    audio: bool
    rgb_pca: str | None
    audio_pca: str | None
    trust_model: bool = False


class _Models:
    """Holds the loaded `FeatureModels` (Beam's Shared keeps objects by weak reference)."""

    def __init__(self, models: Any) -> None:
        self.models = models


def _local_copy(uri: str | None) -> str | None:
    """A remote model file or folder copied once into the local temp folder; local paths as given."""
    if uri is None or not is_remote(uri):
        return uri
    cache = Path(tempfile.gettempdir()) / (MODELS_CACHE_PREFIX + hashlib.sha1(uri.encode()).hexdigest()[:12])
    base = uri.rstrip("/")
    listed = FileSystems.match([base + "/**"])[0].metadata_list  # a folder: every file below it
    folder = bool(listed)
    if not folder:  # a single file (a PCA)
        listed = FileSystems.match([uri])[0].metadata_list
        if not listed:
            raise Yt8mError(f"{uri}: no such file or folder")
        base = uri.rpartition("/")[0]
    for meta in listed:
        target = cache / meta.path[len(base) + 1:]
        if not target.exists() or target.stat().st_size != meta.size_in_bytes:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f"{target.name}.{os.getpid()}.part")  # processes may copy at once
            copy_to_local(meta.path, partial).replace(target)
    return str(cache if folder else cache / _posix(uri).name)


def load_models(settings: ModelSettings) -> _Models:
    """Load the feature models (remote model files are copied to the worker first)."""
    return _Models(backbones.load_feature_models(
        weights=settings.weights,
        models_dir=_local_copy(settings.models_dir),
        precision=settings.precision,
        audio=settings.audio,
        rgb_pca_path=_local_copy(settings.rgb_pca),
        audio_pca_path=_local_copy(settings.audio_pca),
        trust_model=settings.trust_model,
    ))


def _error_row(uri: str, message: str, local: Path | None = None) -> tuple[str, str]:
    """(path, reason): the message without its leading `path: `, temporary names replaced by the URI."""
    if local is not None and str(local) != uri:
        message = message.replace(str(local), uri)
    for prefix in (f"{uri}: ", f"{Path(uri)}: "):
        if message.startswith(prefix):
            return uri, message[len(prefix):]
    return uri, message


class ExtractVideos(beam.DoFn):
    """BeamVideo -> serialized SequenceExample (main output) or (path, reason) (`errors` output)."""

    def __init__(self, settings: ModelSettings, extraction: dict[str, Any], shared: Shared,
                 group_size: int = VIDEOS_PER_GROUP) -> None:
        self._settings = settings
        self._extraction = dict(extraction)
        self._shared = shared
        self._group_size = int(group_size)
        self._counters = {name: beam.metrics.Metrics.counter(METRICS_NAMESPACE, name) for name in COUNTERS}

    def setup(self) -> None:
        settings = self._settings
        self._models = self._shared.acquire(lambda: load_models(settings), tag=repr(settings))
        self._extractor = pipeline.FeatureExtractor(self._models.models, **self._extraction)

    def start_bundle(self) -> None:
        self._pending: list[BeamVideo] = []

    def process(self, video: BeamVideo) -> Iterator[Any]:
        self._pending.append(video)
        if len(self._pending) >= self._group_size:
            yield from self._extract_pending()

    def finish_bundle(self) -> Iterator[Any]:
        for output in self._extract_pending():
            if isinstance(output, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(output.tag, GlobalWindows.windowed_value(output.value))
            else:
                yield GlobalWindows.windowed_value(output)

    def _extract_pending(self) -> Iterator[Any]:
        """Run the pending videos through one FeatureExtractor call (frames batched across them)."""
        videos = sorted(self._pending, key=lambda v: v.video_id)  # a stable order, whatever the bundle's
        self._pending = []
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX))
        sources: dict[Path, BeamVideo] = {}
        failed: list[tuple[str, str]] = []

        def inputs() -> Iterator[inputs_lib.VideoInput]:  # pulled by the decode threads, one at a time
            for number, video in enumerate(videos):
                local = Path(video.uri)
                if is_remote(video.uri):
                    local = staging / f"{number:05d}-{_posix(video.uri).name}"
                    try:
                        copy_to_local(video.uri, local)
                    except Exception as error:  # noqa: BLE001 - any I/O failure is this file's error
                        failed.append((video.uri, f"cannot be copied to the worker ({error})".replace("\n", " ")))
                        local.unlink(missing_ok=True)
                        continue
                found = video_lib.probe(local)  # the local run's check, with its words for a bad file
                if not found.ok:
                    failed.append(_error_row(video.uri, found.message, local))
                    if local != Path(video.uri):
                        local.unlink(missing_ok=True)
                    continue
                sources[local] = video
                has_audio = found.has_audio if found.audio_problem is None else None
                yield inputs_lib.VideoInput(local, video.video_id, video.labels, has_audio=has_audio)

        try:
            for result in self._extractor.extract(inputs()):
                video = sources.pop(result.input.path)
                if result.input.path != Path(video.uri):
                    result.input.path.unlink(missing_ok=True)
                if result.ok:
                    self._counters["videos"].inc()
                    self._counters["frames"].inc(result.frames)
                    self._counters["audio_missing"].inc(int(result.audio == pipeline.AUDIO_MISSING))
                    self._counters["capped"].inc(int(bool(getattr(result, "capped", False))))
                    yield records.serialize(result.features)
                else:
                    self._counters["failed"].inc()
                    yield beam.pvalue.TaggedOutput(ERRORS_TAG, _error_row(video.uri, result.error or "failed", result.input.path))
            for row in failed:
                self._counters["failed"].inc()
                yield beam.pvalue.TaggedOutput(ERRORS_TAG, row)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _csv_lines(rows: list[tuple[str, str]]) -> list[str]:
    """Sorted CSV lines (quoted where needed) for the errors file."""
    lines = []
    for row in sorted(rows):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(row)
        lines.append(buffer.getvalue())
    return lines


# ----------------------------------------------------------------------------- driver


def beam_flags(runner: str, beam_options: Iterable[str]) -> list[str]:
    """Pipeline flags as Beam parses them: `--key=value` and `--key value` as given, `key=value` -> `--key=value`."""
    flags = [f"--runner={runner}"]
    for option in beam_options:
        text = str(option).strip()
        if not text:
            continue
        dangling = flags[-1].startswith("-") and "=" not in flags[-1] and len(flags) > 1
        flags.append(text if text.startswith("-") or dangling else f"--{text}")
    return flags


def _make_pipeline(runner: str, pipeline_options: Any) -> Any:
    """A Beam pipeline on `runner`; DirectRunner is the FnApiRunner here (never a Prism download)."""
    if runner not in DIRECT_NAMES:
        return beam.Pipeline(options=pipeline_options)
    encoded = JobServiceHandle.encode_pipeline_options(pipeline_options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return beam.Pipeline(runner=fn_runner.FnApiRunner(provision_info=provision), options=pipeline_options)


def _counters(result: Any) -> dict[str, int]:
    counts = dict.fromkeys(COUNTERS, 0)
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except Exception:  # noqa: BLE001 - a runner without metrics: the errors CSV still counts failures
        return counts
    for counter in query.get("counters", []):
        name = counter.key.metric.name
        if name in counts:
            value = counter.committed if counter.committed is not None else counter.attempted
            counts[name] += int(value or 0)
    return counts


def _beam_error(error: BaseException) -> Yt8mError | None:
    """The one-line Yt8mError inside a runner's wrapped exception (missing model files, ...), if any."""
    if isinstance(error, Yt8mError):
        return error
    found = re.findall(r"Yt8mError: ([^\n]+)", str(error))
    return Yt8mError(found[-1].strip()) if found else None


def _shards_of(prefix: str, suffix: str) -> list[str]:
    return sorted(meta.path for meta in FileSystems.match([prefix + SHARD_GLOB + suffix])[0].metadata_list)


def _local_file(path: str | None, folder: Path) -> str | None:
    """A remote labels CSV or label map copied into `folder`; local paths as given."""
    if path is None or not is_remote(path):
        return path
    return str(copy_to_local(path, folder / _posix(path).name))


def _check_record_fields(videos: list[BeamVideo], names: list[str] | None) -> tuple[list[BeamVideo], list[tuple[str, str]]]:
    """The videos whose id and labels a record can hold, and (path, reason) for the others (as locally)."""
    kept, refused = [], []
    for video in videos:
        try:
            records.check_video_id(video.video_id, video.uri)
            records.check_labels(video.labels, video.uri, num_classes=len(names) if names else None)
        except Yt8mError as error:
            refused.append(_error_row(video.uri, str(error)))
            continue
        kept.append(video)
    return kept, refused


def _check_output(out: str, options: Any) -> None:
    """Refuse an existing output without overwrite, as the local run does."""
    if not is_remote(out):
        shards_lib.check_output(Path(out), options.shard_size or RECORDS_PER_SHARD, overwrite=options.overwrite)
        return
    if not options.overwrite and _shards_of(*shard_prefix(out)):
        raise Yt8mError(f"{out}: exists (shard files); pass overwrite=True to replace it")


def extract(
    inputs: Iterable[str | os.PathLike] | str | os.PathLike,
    output: str | os.PathLike,
    options: Any = None,
    progress: Callable[[Any], None] | None = None,
    **kwargs: Any,
) -> Any:
    """`yt8m.extractor.job.extract`'s job on the Beam runner `options.runner`; the same summary.

    `options` is an `ExtractOptions` (`kwargs` override its fields, e.g. `runner="DirectRunner"`);
    `options.beam_options` are pipeline options (`key=value` or Beam's own `--flags`). Records go
    to `OUT-00000-of-000NN.tfrecord` shards (`shard_size` records per shard, default
    RECORDS_PER_SHARD), failed files to `OUT-errors.csv`. `progress` gets `JobMessage`s.
    """
    started = time.perf_counter()
    options = job.make_options(options, **kwargs)
    job.check_extract_options(options)
    if not options.runner:
        raise Yt8mError(f"runner: give a Beam runner ({', '.join(LOCAL_RUNNERS + CLUSTER_RUNNERS)})")
    runner = str(options.runner)
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if options.resume:
        raise Yt8mError("resume=True is not available on Beam: run the files listed in OUT-errors.csv again instead")
    out = os.fspath(output) if is_remote(os.fspath(output)) else str(job.resolve_output(output, paths))
    options = dataclasses.replace(options, **{name: remote_path(getattr(options, name)) for name in PATH_OPTIONS})
    summary = job.ExtractSummary(output=out if is_remote(out) else Path(out), weights=options.weights)

    def say(level: str, text: str) -> None:
        if level == job.WARNING:
            summary.warnings.append(text)
        if progress is not None:
            progress(job.JobMessage(level, text))

    _check_output(out, options)
    found = find_videos(paths, summary.skipped_by_extension)
    with tempfile.TemporaryDirectory(prefix=STAGING_PREFIX) as scratch:  # a remote labels CSV / label map
        local = {name: _local_file(getattr(options, name), Path(scratch)) for name in ("labels", "label_map")}
        videos, labelled = make_videos(found, dataclasses.replace(options, **local))
    summary.unlabelled = labelled.unlabelled
    videos, early_errors = _check_record_fields(videos, labelled.label_map)
    if labelled.unlabelled:
        say(job.WARNING, f"{options.labels}: has no row for {labelled.unlabelled} of {len(videos)} video(s); "
                         "they get no labels")
    if options.fps != job.YT8M_FPS:
        say(job.WARNING, f"fps={options.fps:g}: YouTube-8M records have 1 frame per second; models trained on YT8M expect that")

    extraction = dict(fps=options.fps, max_frames=options.max_frames, sampling=options.sampling,
                      audio=not options.no_audio, batch_size=options.batch_size, workers=options.workers)
    settings = ModelSettings(
        weights=options.weights,
        models_dir=None if options.models_dir is None else os.fspath(options.models_dir),
        precision=options.precision,
        audio=not options.no_audio,
        rgb_pca=None if options.rgb_pca is None else os.fspath(options.rgb_pca),
        audio_pca=None if options.audio_pca is None else os.fspath(options.audio_pca),
        trust_model=bool(getattr(options, "trust_model", False)),
    )
    flags = beam_flags(runner, getattr(options, "beam_options", ()) or ())
    pipeline_options = PipelineOptions(flags)
    parsers: list[Any] = []  # Beam's own option parser, to name the flags it does not know
    pipeline_options.get_all_options(add_extra_args_fn=parsers.append)
    known = [name for action in parsers[0]._actions for name in action.option_strings]
    for flag in (flag for flag in parsers[0].parse_known_args(flags)[1] if flag.startswith("-")):
        name = flag.split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        say(job.WARNING, f"beam_options: Beam does not know the pipeline option {name}{hint}")
    shared = Shared()
    if runner in LOCAL_RUNNERS + DIRECT_NAMES:  # workers run on this machine: load now, fail early, reuse
        models = shared.acquire(lambda: load_models(settings), tag=repr(settings)).models
        summary.models_loaded = True
        summary.weights = models.weights
        for message in models.warnings:
            say(job.WARNING, message)
    elif weights_kind(options.weights) == WEIGHTS_RANDOM:
        say(job.WARNING, "weights=random: the networks have RANDOM weights; these are NOT YouTube-8M features")

    shards = max(1, math.ceil(len(videos) / (options.shard_size or RECORDS_PER_SHARD)))
    prefix, suffix = shard_prefix(out)
    errors_csv = errors_path_for(out)
    try:
        p = _make_pipeline(runner, pipeline_options)
    except ValueError as error:
        raise Yt8mError(f"runner: {error}") from None
    outputs = (
        p
        | "Videos" >> beam.Create(videos)
        | "Spread" >> beam.Reshuffle()
        | "Extract" >> beam.ParDo(ExtractVideos(settings, extraction, shared)).with_outputs(ERRORS_TAG, main=RECORDS_TAG)
    )
    outputs[RECORDS_TAG] | "WriteRecords" >> beam.io.WriteToTFRecord(
        prefix, file_name_suffix=suffix, num_shards=shards, shard_name_template=SHARD_TEMPLATE)
    early = p | "RefusedEarly" >> beam.Create(early_errors)  # ids / labels a record cannot hold
    (
        (outputs[ERRORS_TAG], early)
        | "Errors" >> beam.Flatten()
        | "AllErrors" >> beam.combiners.ToList()
        | "ErrorLines" >> beam.FlatMap(_csv_lines)
        | "WriteErrors" >> beam.io.WriteToText(
            errors_csv, num_shards=1, shard_name_template="", header=",".join(ERRORS_HEADER))
    )
    say(job.INFO, f"running on {runner}: {len(videos)} video(s) -> {prefix}{SHARD_TEMPLATE}{suffix}, "
                  f"{shards} shard(s); failed files -> {errors_csv}")
    try:
        result = p.run()
        result.wait_until_finish()
    except Exception as error:  # noqa: BLE001 - the runner wraps worker errors; ours become one line
        mapped = _beam_error(error)
        if mapped is None:
            raise
        raise mapped from None

    matched = FileSystems.match([prefix + SHARD_GLOB + suffix])[0].metadata_list
    ours = [meta for meta in matched if meta.path.endswith(f"-of-{shards:05d}{suffix}")]
    stale = sorted({meta.path for meta in matched} - {meta.path for meta in ours})  # an overwritten run's
    if all(meta.size_in_bytes == 0 for meta in ours):  # every file failed: write nothing, as locally
        stale += [meta.path for meta in ours]
        ours = []
    if stale:
        FileSystems.delete(stale)
    written = sorted(meta.path for meta in ours)
    summary.written = [path if is_remote(path) else Path(path) for path in written]
    rows = list(csv.reader(io.StringIO(_read_text(errors_csv))))[1:] if FileSystems.exists(errors_csv) else []
    counts = _counters(result)
    summary.videos, summary.frames = counts["videos"], counts["frames"]
    summary.audio_missing, summary.capped = counts["audio_missing"], counts["capped"]
    summary.seconds = summary.frames / options.fps
    summary.models_loaded = summary.models_loaded or summary.videos > 0
    summary.failed = len(rows)
    summary.errors = [f"{row[0]}: {row[1] if len(row) > 1 else 'failed'}" for row in rows if row]
    for line in summary.errors[:ERRORS_SHOWN]:
        say(job.ERROR, line)
    if summary.failed > ERRORS_SHOWN:
        say(job.INFO, f"... and {summary.failed - ERRORS_SHOWN} more failed file(s)")
    if summary.failed:
        say(job.INFO, f"failed files are listed in {errors_csv}; to run just them again: "
                      f"yt8m extract {errors_csv} -o NEW_OUT (with the same options)")
    if summary.videos and labelled.label_map_built and labelled.label_map is not None:
        map_path = label_map_path(out)
        _write_label_map(map_path, labelled.label_map)
        summary.label_map = map_path if is_remote(map_path) else Path(map_path)
        say(job.INFO, f"label map: {len(labelled.label_map)} classes from folder names, saved to {map_path}")
    summary.elapsed = time.perf_counter() - started
    return summary
