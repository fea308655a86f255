"""YT8M records: `VideoFeatures` <-> tf.train.SequenceExample <-> TFRecord shards (REFERENCE.md §1).

Frame-level records are SequenceExamples with context `id`/`labels` and feature lists `rgb`
(1024 bytes per frame) and `audio` (128 bytes per frame). Video-level records are plain Examples
with `mean_rgb`/`mean_audio`; an Example's wire format is a SequenceExample with only a context,
so one parser reads both. Every validation error names the file and the record index.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.core import AUDIO_SIZE, RGB_SIZE, VideoFeatures, Yt8mError

ID_KEY = "id"
LEGACY_ID_KEY = "video_id"  # the 2017 data's name for the id
LABELS_KEY = "labels"
RGB_KEY = "rgb"
AUDIO_KEY = "audio"
MEAN_RGB_KEY = "mean_rgb"
MEAN_AUDIO_KEY = "mean_audio"
SEGMENT_KEYS = ("segment_start_times", "segment_end_times", "segment_labels", "segment_scores")
# yt8m's own context fields (`VideoFeatures.extras`) carry this prefix in the record.
EXTRA_PREFIX = "yt8m_"
KNOWN_CONTEXT_KEYS = {ID_KEY, LEGACY_ID_KEY, LABELS_KEY, MEAN_RGB_KEY, MEAN_AUDIO_KEY, *SEGMENT_KEYS}

SHARD_PATTERN = "{stem}-{index:05d}-of-{count:05d}{suffix}"
_SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})(?P<suffix>\.[^.]*)?$")
_COMPLETE_MARK = ".complete"  # a closed shard waiting for the final count in its name
_TMP_MARK = ".inprogress"
MIN_RECORD_BYTES = 16  # length (8) + length CRC (4) + data CRC (4): the smallest TFRecord entry


def _tf():
    from yt8m._tf import import_tensorflow_quietly  # lazy: keeps `yt8m --help` fast

    return import_tensorflow_quietly()


def _bytes_feature(values: Iterable[bytes]):
    tf = _tf()
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int64_feature(values: Iterable[int]):
    tf = _tf()
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float_feature(values: Iterable[float]):
    tf = _tf()
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _extra_feature(value: Any):
    if isinstance(value, (bool, int, np.integer)):
        return _int64_feature([int(value)])
    if isinstance(value, (float, np.floating)):
        return _float_feature([float(value)])
    if isinstance(value, bytes):
        return _bytes_feature([value])
    return _bytes_feature([str(value).encode("utf-8")])


def _check_frames(features: VideoFeatures) -> None:
    rgb, audio = np.asarray(features.rgb), np.asarray(features.audio)
    if rgb.dtype != np.uint8 or audio.dtype != np.uint8:
        raise Yt8mError(f"video {features.video_id!r}: rgb/audio must be uint8 (quantized)")
    if rgb.ndim != 2 or audio.ndim != 2:
        raise Yt8mError(f"video {features.video_id!r}: rgb/audio must be 2-D [frames, size]")
    if rgb.shape[0] != audio.shape[0]:
        raise Yt8mError(
            f"video {features.video_id!r}: rgb has {rgb.shape[0]} frames but audio has {audio.shape[0]}"
        )


def to_sequence_example(features: VideoFeatures):
    """Build the frame-level SequenceExample for one video (yt8m extras in `yt8m_*` context keys)."""
    tf = _tf()
    _check_frames(features)
    context: dict[str, Any] = {
        ID_KEY: _bytes_feature([features.video_id.encode("utf-8")]),
        LABELS_KEY: _int64_feature(sorted(set(int(label) for label in features.labels))),
    }
    if features.mean_rgb is not None:
        context[MEAN_RGB_KEY] = _float_feature(np.asarray(features.mean_rgb).ravel())
    if features.mean_audio is not None:
        context[MEAN_AUDIO_KEY] = _float_feature(np.asarray(features.mean_audio).ravel())
    if features.has_segments:
        context["segment_start_times"] = _int64_feature(features.segment_start_times)
        context["segment_end_times"] = _int64_feature(features.segment_end_times)
        context["segment_labels"] = _int64_feature(features.segment_labels)
        context["segment_scores"] = _float_feature(features.segment_scores)
    for key, value in features.extras.items():
        context[EXTRA_PREFIX + key] = _extra_feature(value)
    rgb = np.ascontiguousarray(features.rgb)
    audio = np.ascontiguousarray(features.audio)
    feature_lists = tf.train.FeatureLists(
        feature_list={
            RGB_KEY: tf.train.FeatureList(feature=[_bytes_feature([row.tobytes()]) for row in rgb]),
            AUDIO_KEY: tf.train.FeatureList(feature=[_bytes_feature([row.tobytes()]) for row in audio]),
        }
    )
    return tf.train.SequenceExample(context=tf.train.Features(feature=context), feature_lists=feature_lists)


def to_video_level_example(features: VideoFeatures):
    """Build the video-level Example (`id`, `labels`, `mean_rgb`, `mean_audio`) of one video."""
    tf = _tf()
    mean_rgb = features.mean_rgb
    mean_audio = features.mean_audio
    if mean_rgb is None or mean_audio is None:
        raise Yt8mError(f"video {features.video_id!r}: video-level records need mean_rgb and mean_audio")
    feature = {
        ID_KEY: _bytes_feature([features.video_id.encode("utf-8")]),
        LABELS_KEY: _int64_feature(sorted(set(int(label) for label in features.labels))),
        MEAN_RGB_KEY: _float_feature(np.asarray(mean_rgb).ravel()),
        MEAN_AUDIO_KEY: _float_feature(np.asarray(mean_audio).ravel()),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def serialize(features: VideoFeatures) -> bytes:
    """Serialized frame-level SequenceExample bytes of one video."""
    return to_sequence_example(features).SerializeToString()


def _feature_values(feature) -> list:
    kind = feature.WhichOneof("kind")
    if kind is None:
        return []
    return list(getattr(feature, kind).value)


def _bytes_rows(feature_list, size: int, key: str, where: str) -> np.ndarray:
    rows = []
    for frame, feature in enumerate(feature_list.feature):
        values = feature.bytes_list.value
        if len(values) != 1 or len(values[0]) != size:
            got = len(values[0]) if len(values) == 1 else f"{len(values)} values"
            raise Yt8mError(f"{where}: frame {frame} of '{key}' has {got} bytes, expected {size}")
        rows.append(values[0])
    if not rows:
        return np.zeros((0, size), dtype=np.uint8)
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), size)


def parse_record(
    data: bytes,
    source: str = "<bytes>",
    index: int = 0,
    rgb_size: int = RGB_SIZE,
    audio_size: int = AUDIO_SIZE,
) -> VideoFeatures:
    """Parse and validate one serialized frame-level SequenceExample or video-level Example.

    Video-level records come back with zero frames and `mean_rgb`/`mean_audio` set. Raises
    `Yt8mError` naming `source` and `index` for wrong byte lengths, rgb/audio length mismatch or a
    missing id.
    """
    tf = _tf()
    where = f"{source}: record {index}"
    try:
        proto = tf.train.SequenceExample.FromString(data)
    except Exception as error:  # protobuf's DecodeError and friends
        raise Yt8mError(f"{where}: not a tf.train.SequenceExample or Example ({error})") from None
    context = proto.context.feature
    id_key = ID_KEY if ID_KEY in context else LEGACY_ID_KEY if LEGACY_ID_KEY in context else None
    if id_key is None or not context[id_key].bytes_list.value:
        raise Yt8mError(f"{where}: missing the video id (context 'id' or 'video_id')")
    video_id = context[id_key].bytes_list.value[0].decode("utf-8", errors="replace")
    where = f"{source}: record {index} (id {video_id!r})"

    lists = proto.feature_lists.feature_list
    if RGB_KEY in lists or AUDIO_KEY in lists:
        rgb = _bytes_rows(lists[RGB_KEY], rgb_size, RGB_KEY, where) if RGB_KEY in lists else None
        audio = _bytes_rows(lists[AUDIO_KEY], audio_size, AUDIO_KEY, where) if AUDIO_KEY in lists else None
        if rgb is None or audio is None:
            missing = AUDIO_KEY if audio is None else RGB_KEY
            raise Yt8mError(f"{where}: has no '{missing}' feature list")
        if rgb.shape[0] != audio.shape[0]:
            raise Yt8mError(f"{where}: 'rgb' has {rgb.shape[0]} frames but 'audio' has {audio.shape[0]}")
    else:
        rgb = np.zeros((0, rgb_size), dtype=np.uint8)
        audio = np.zeros((0, audio_size), dtype=np.uint8)

    def floats(key: str, size: int) -> np.ndarray | None:
        if key not in context:
            return None
        values = np.asarray(_feature_values(context[key]), dtype=np.float32)
        if values.size != size:
            raise Yt8mError(f"{where}: '{key}' has {values.size} values, expected {size}")
        return values

    features = VideoFeatures(
        video_id=video_id,
        rgb=rgb,
        audio=audio,
        labels=[int(v) for v in _feature_values(context[LABELS_KEY])] if LABELS_KEY in context else [],
        mean_rgb=floats(MEAN_RGB_KEY, rgb_size),
        mean_audio=floats(MEAN_AUDIO_KEY, audio_size),
    )
    if not (RGB_KEY in lists) and features.mean_rgb is None:
        raise Yt8mError(f"{where}: neither frame-level 'rgb'/'audio' nor video-level 'mean_rgb'")
    if "segment_labels" in context:
        segment = {key: _feature_values(context[key]) if key in context else [] for key in SEGMENT_KEYS}
        lengths = {len(values) for values in segment.values()}
        if len(lengths) != 1:
            raise Yt8mError(f"{where}: segment fields have different lengths")
        features.segment_start_times = [int(v) for v in segment["segment_start_times"]]
        features.segment_end_times = [int(v) for v in segment["segment_end_times"]]
        features.segment_labels = [int(v) for v in segment["segment_labels"]]
        features.segment_scores = [float(v) for v in segment["segment_scores"]]
    features.extras.update(_extras_of(context))
    return features


def _extras_of(context) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    for key, feature in context.items():
        if key.startswith(EXTRA_PREFIX):
            values = _feature_values(feature)
            value = values[0] if len(values) == 1 else values
            extras[key[len(EXTRA_PREFIX):]] = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    return extras


def record_extras(data: bytes) -> dict[str, Any]:
    """yt8m's own context fields of one serialized record, without parsing its frames."""
    tf = _tf()
    try:
        return _extras_of(tf.train.SequenceExample.FromString(data).context.feature)
    except Exception:  # not a record: the readers report it with its file and index
        return {}


def list_record_files(pattern: str | os.PathLike) -> list[str]:
    """Expand a file, a directory (its *.tfrecord files), a glob or a comma-separated list of those.

    Local paths and anything tf.io.gfile opens (e.g. gs://) are accepted. Raises `Yt8mError` when
    nothing matches.
    """
    files: list[str] = []
    for part in str(pattern).split(","):
        part = part.strip()
        if not part:
            continue
        if "://" in part:
            tf = _tf()
            matches = sorted(tf.io.gfile.glob(part))
        elif os.path.isdir(part):
            matches = sorted(
                str(p) for p in Path(part).iterdir()
                if p.is_file() and not p.name.startswith(".") and ".tfrecord" in p.name
            )
        elif any(ch in part for ch in "*?["):
            matches = sorted(p for p in glob.glob(part) if os.path.isfile(p))
        else:
            if not os.path.exists(part):
                raise Yt8mError(f"{part}: no such file")
            matches = [part]
        if not matches:
            raise Yt8mError(f"{part}: matches no record files")
        files.extend(matches)
    if not files:
        raise Yt8mError(f"{pattern!s}: matches no record files")
    return files


def iterate_raw_records(path: str) -> Iterator[bytes]:
    """Yield the serialized records of one TFRecord file; corrupt or truncated data -> `Yt8mError`."""
    tf = _tf()
    if "://" not in path and os.path.isfile(path) and 0 < os.path.getsize(path) < MIN_RECORD_BYTES:
        raise Yt8mError(f"{path}: not a valid TFRecord file: truncated at record 0")
    index = 0
    try:
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield record
            index += 1
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        message = str(error).lower()
        reason = "truncated" if "truncated" in message else "corrupted" if "corrupt" in message else "unreadable"
        raise Yt8mError(f"{path}: not a valid TFRecord file: {reason} at record {index}") from None
    except tf.errors.NotFoundError:
        raise Yt8mError(f"{path}: no such file") from None
    except tf.errors.PermissionDeniedError:
        raise Yt8mError(f"{path}: permission denied") from None


def read_records(pattern: str | os.PathLike, rgb_size: int = RGB_SIZE, audio_size: int = AUDIO_SIZE) -> Iterator[VideoFeatures]:
    """Parse and validate every record of every file matching `pattern`, in file order."""
    for path in list_record_files(pattern):
        for index, data in enumerate(iterate_raw_records(path)):
            yield parse_record(data, source=path, index=index, rgb_size=rgb_size, audio_size=audio_size)


def shard_name(out_path: str | os.PathLike, index: int, count: int) -> Path:
    """`OUT-00000-of-00003.tfrecord` for shard `index` of `count` next to `out_path`."""
    out = Path(out_path)
    return out.with_name(SHARD_PATTERN.format(stem=out.stem, index=index, count=count, suffix=out.suffix))


class ShardWriter:
    """Write records to one file or to shards of `shard_size` records, never exposing partial files.

    The file being written is `.NAME.inprogress`; a full shard becomes `.STEM-00000.complete`
    until `close()` knows the shard count and renames every shard to `STEM-00000-of-000NN.tfrecord`
    (or the single output to `out_path`). `abort()` removes the in-progress file only, so complete
    shards survive an interruption. With `resume=True` the complete shards of an earlier run are
    kept and the new records are added after them (a single output file is copied forward);
    without it, `close()` replaces whatever an earlier run left under the same name.
    """

    def __init__(self, out_path: str | os.PathLike, shard_size: int | None = None, resume: bool = False) -> None:
        if shard_size is not None and shard_size < 1:
            raise Yt8mError(f"shard size must be >= 1, got {shard_size}")
        self.out_path = Path(out_path)
        self.shard_size = shard_size
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = None
        self._current: Path | None = None
        self._in_shard = 0
        self._finished: list[Path] = []
        self.records_written = 0
        if resume and shard_size:
            self._finished = complete_shards(self.out_path)
        elif resume and self.out_path.exists():
            for data in iterate_raw_records(str(self.out_path)):
                self.write_serialized(data)

    def _open(self) -> None:
        tf = _tf()
        index = len(self._finished)
        name = f".{self.out_path.stem}-{index:05d}" if self.shard_size else f".{self.out_path.name}"
        self._current = self.out_path.with_name(name + _TMP_MARK)
        self._writer = tf.io.TFRecordWriter(str(self._current))
        self._in_shard = 0

    def _finish_current(self) -> None:
        if self._writer is None or self._current is None:
            return
        self._writer.close()
        done = self._current.with_name(self._current.name[: -len(_TMP_MARK)] + _COMPLETE_MARK)
        os.replace(self._current, done)
        self._finished.append(done)
        self._writer = None
        self._current = None

    def write(self, features: VideoFeatures) -> None:
        self.write_serialized(serialize(features))

    def write_serialized(self, data: bytes) -> None:
        if self._writer is None:
            self._open()
        self._writer.write(data)
        self._in_shard += 1
        self.records_written += 1
        if self.shard_size and self._in_shard >= self.shard_size:
            self._finish_current()

    def close(self) -> list[Path]:
        """Finish the last shard and give every shard its final name; returns the final paths."""
        if self._writer is None and not self._finished and not self.shard_size:
            self._open()  # an empty run still produces a (valid, empty) file
        self._finish_current()
        if not self.shard_size:
            os.replace(self._finished[0], self.out_path)
            return [self.out_path]
        for _, stale in _shard_files(self.out_path):
            if stale not in self._finished:
                stale.unlink()
        count = len(self._finished)
        finals = []
        for index, path in enumerate(self._finished):
            final = shard_name(self.out_path, index, count)
            os.replace(path, final)
            finals.append(final)
        return finals

    def abort(self) -> None:
        """Drop the record file being written; complete shards stay for `--resume`."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._current is not None and self._current.exists():
            self._current.unlink()
        self._current = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _shard_files(out: Path) -> list[tuple[int, Path]]:
    """Every shard file (final or `.complete`) an earlier run left for `out`, as (index, path)."""
    if not out.parent.exists():
        return []
    found: list[tuple[int, Path]] = []
    for path in out.parent.iterdir():
        match = _SHARD_RE.match(path.name)
        if match and match["stem"] == out.stem and (match["suffix"] or "") == out.suffix:
            found.append((int(match["index"]), path))
        elif path.name.startswith(f".{out.stem}-") and path.name.endswith(_COMPLETE_MARK):
            digits = path.name[len(out.stem) + 2 : -len(_COMPLETE_MARK)]
            if digits.isdigit():
                found.append((int(digits), path))
    return sorted(found)


def complete_shards(out_path: str | os.PathLike) -> list[Path]:
    """Complete shards of an earlier run for `out_path` (final names and `.complete` ones), in order.

    They are renamed to consecutive `.complete` names so that the next `close()` renumbers the
    whole set consistently (two-phase, so no rename can overwrite another shard).
    """
    out = Path(out_path)
    found = _shard_files(out)
    staged = []
    for position, (_, path) in enumerate(found):
        stage = out.with_name(f".{out.stem}-{position:05d}.renaming")
        os.replace(path, stage)
        staged.append(stage)
    shards = []
    for position, stage in enumerate(staged):
        pending = out.with_name(f".{out.stem}-{position:05d}{_COMPLETE_MARK}")
        os.replace(stage, pending)
        shards.append(pending)
    return shards


def existing_ids(out_path: str | os.PathLike) -> set[str]:
    """Video ids already written to complete shards (or the complete single file) of `out_path`."""
    out = Path(out_path)
    files = [str(path) for _, path in _shard_files(out)]
    if out.exists():
        files.append(str(out))
    ids: set[str] = set()
    for path in files:
        for index, data in enumerate(iterate_raw_records(path)):
            ids.add(parse_record(data, source=path, index=index).video_id)
    return ids
