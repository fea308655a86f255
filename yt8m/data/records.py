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
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yt8m._tf import import_tensorflow_quietly
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

MIN_RECORD_BYTES = 16  # length (8) + length CRC (4) + data CRC (4): the smallest TFRecord entry
_HEADER_BYTES = 12  # uint64 length + masked CRC-32C of the length
_FOOTER_BYTES = 4  # masked CRC-32C of the data
MAX_LABEL = 2**31 - 1  # the largest class index a label may have (records store int64, models int32 one-hots)
BOM = "\ufeff"
# Characters a video id may not hold: they would break the Kaggle CSV (`VideoId,LabelConfidencePairs`).
_BAD_ID_CHARS = re.compile(r'[,"\x00-\x1f\x7f]')


def _tf():
    return import_tensorflow_quietly()  # imported on first use: keeps `yt8m --help` fast


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
    check_video_id(features.video_id)
    rgb, audio = np.asarray(features.rgb), np.asarray(features.audio)
    if rgb.dtype != np.uint8 or audio.dtype != np.uint8:
        raise Yt8mError(f"video {features.video_id!r}: rgb/audio must be uint8 (quantized)")
    if rgb.ndim != 2 or audio.ndim != 2:
        raise Yt8mError(f"video {features.video_id!r}: rgb/audio must be 2-D [frames, size]")
    if rgb.shape[0] != audio.shape[0]:
        raise Yt8mError(
            f"video {features.video_id!r}: rgb has {rgb.shape[0]} frames but audio has {audio.shape[0]}"
        )
    if rgb.shape[0] == 0:
        raise Yt8mError(f"video {features.video_id!r}: has zero frames; a frame-level record needs at least one")
    check_labels(features.labels, f"video {features.video_id!r}")


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
    return to_sequence_example(features).SerializeToString(deterministic=True)


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
    `Yt8mError` naming `source` and `index` for wrong byte lengths, rgb/audio length mismatch, a
    missing, empty or CSV-breaking id (`check_video_id`) or a frame-level record with zero frames.
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
    check_video_id(video_id, where)
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
        if rgb.shape[0] == 0:
            raise Yt8mError(f"{where}: has zero frames")
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


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C (Castagnoli); used on the 8-byte length headers only (pure Python)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclass(frozen=True)
class RecordLayout:
    """Where the complete records of a local TFRecord file end, and what (if anything) follows them.

    `count` complete records occupy bytes [0, `end`); `problem` is None when the file ends exactly
    there, else "truncated" or "corrupted" (a length header whose checksum does not match, or a
    record whose data checksum fails: then `end` is -1).
    """

    path: str
    size: int
    count: int
    end: int
    problem: str | None

    @property
    def complete(self) -> bool:
        return self.problem is None

    def error(self) -> Yt8mError:
        return Yt8mError(f"{self.path}: not a valid TFRecord file: {self.problem} at record {self.count}")


def record_layout(path: str | os.PathLike) -> RecordLayout:
    """Walk a local TFRecord file's length headers with seeks (no parsing, data checksums unread).

    Cheap even for large shards: 12 bytes read per record. Finds files cut inside a header or a
    record, and garbage where a header should be.
    """
    path = str(path)
    try:
        size = os.path.getsize(path)
        handle = open(path, "rb")
    except FileNotFoundError:
        raise Yt8mError(f"{path}: no such file") from None
    except PermissionError:
        raise Yt8mError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise Yt8mError(f"{path}: is a folder, not a TFRecord file") from None
    count = offset = 0
    with handle:
        while offset < size:
            header = handle.read(_HEADER_BYTES)
            if len(header) < _HEADER_BYTES:
                return RecordLayout(path, size, count, offset, "truncated")
            length, length_crc = struct.unpack("<QI", header)
            if _masked_crc32c(header[:8]) != length_crc:
                return RecordLayout(path, size, count, offset, "corrupted")
            following = offset + _HEADER_BYTES + length + _FOOTER_BYTES
            if following > size:
                return RecordLayout(path, size, count, offset, "truncated")
            handle.seek(following)
            offset = following
            count += 1
    return RecordLayout(path, size, count, offset, None)


def _is_local(path: str) -> bool:
    return "://" not in path


def count_records(path: str | os.PathLike) -> int:
    """Number of records in a local TFRecord file; a truncated or corrupt file -> `Yt8mError`."""
    layout = record_layout(path)
    if not layout.complete:
        raise layout.error()
    return layout.count


def check_record_files(files: Iterable[str | os.PathLike]) -> None:
    """Refuse, before any reading, a local file that does not end exactly after its last record.

    Meant for the tf.data readers (train / eval / predict / inspect): TensorFlow stops silently at a
    file cut inside a record header, so such a file would pass with records missing. Remote
    files (`gs://...`) are skipped.
    """
    for path in files:
        if _is_local(str(path)):
            count_records(path)


def check_video_id(video_id: str, where: str = "") -> str:
    """Return `video_id` if a record and the Kaggle CSV can hold it; `Yt8mError` otherwise.

    Refused: an empty id, and ids with a comma, a double quote or a control character (newline,
    tab ...): the predictions CSV is `VideoId,LabelConfidencePairs` without quoting.
    """
    prefix = f"{where}: " if where else ""
    if not video_id:
        raise Yt8mError(f"{prefix}empty video id")
    bad = _BAD_ID_CHARS.search(video_id)
    if bad:
        raise Yt8mError(
            f"{prefix}video id {video_id!r} contains {bad.group()!r}; ids may not hold commas, quotes "
            "or control characters (rename the file or use another id)"
        )
    return video_id


def check_labels(labels: Iterable[Any], where: str = "", num_classes: int | None = None) -> tuple[int, ...]:
    """Class indices as ints, refusing before any work what a record cannot hold or a model cannot use.

    Accepts ints or their decimal text ("12"); refused: other text ("1e20", "1.5", "x"), negative
    numbers, and indices >= `num_classes` (when known) or beyond MAX_LABEL.
    """
    prefix = f"{where}: " if where else ""
    limit = num_classes if num_classes is not None else MAX_LABEL + 1
    out = []
    for label in labels:
        text = str(label).strip()
        if isinstance(label, bool) or not re.fullmatch(r"\d+", text):
            raise Yt8mError(f"{prefix}label {text!r} is not a class index (a whole number >= 0)")
        value = int(text)
        if value >= limit:
            bound = f"the {num_classes} classes (0..{num_classes - 1})" if num_classes is not None else f"{MAX_LABEL}"
            raise Yt8mError(f"{prefix}label {value} is out of range: more than {bound}")
        out.append(value)
    return tuple(out)


def validate_label_map_lines(lines: Sequence[str], source: str = "label map") -> list[str]:
    """Class names of a label map's lines: the rule every label-map reader should apply.

    A UTF-8 byte-order mark before the first name is dropped (Windows editors add one); trailing
    empty lines are ignored; a blank line between names is refused, since it would silently shift
    every later class by one (an unnamed class is written `???`, as in MediaPipe's map).
    """
    names = [line.strip() for line in lines]
    if names and names[0].startswith(BOM):
        names[0] = names[0][len(BOM):].strip()
    while names and not names[-1]:
        names.pop()
    for number, name in enumerate(names, start=1):
        if not name:
            raise Yt8mError(
                f"{source}: line {number} is blank; every class index needs a name (write ??? for an unnamed class)"
            )
    return names


def iterate_raw_records(path: str, limit: int | None = None) -> Iterator[bytes]:
    """Yield the serialized records of one TFRecord file; corrupt or truncated data -> `Yt8mError`.

    A local file is first checked to end exactly after its last record (TensorFlow alone accepts a
    file cut inside a record header). `limit`: read only the first `limit` records (used to recover
    the complete records of a partial file, see `complete_records`).
    """
    tf = _tf()
    if _is_local(path) and limit is None:
        count_records(path)
    index = 0
    try:
        dataset = tf.data.TFRecordDataset(path)
        if limit is not None:
            dataset = dataset.take(limit)
        for record in dataset.as_numpy_iterator():
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


def complete_records(path: str | os.PathLike) -> tuple[list[bytes], RecordLayout]:
    """The complete records at the start of a possibly cut local file (a killed writer's partial file).

    A TFRecord file is readable up to its last complete record: the records before the cut (or
    before the first record whose data checksum fails) are returned with the file's layout, whose
    `problem` is set when anything after them was dropped.
    """
    layout = record_layout(path)
    records: list[bytes] = []
    try:
        for data in iterate_raw_records(str(path), limit=layout.count):
            records.append(data)
    except Yt8mError:
        layout = RecordLayout(layout.path, layout.size, len(records), -1, "corrupted")
    return records, layout


def read_records(pattern: str | os.PathLike, rgb_size: int = RGB_SIZE, audio_size: int = AUDIO_SIZE) -> Iterator[VideoFeatures]:
    """Parse and validate every record of every file matching `pattern`, in file order."""
    for path in list_record_files(pattern):
        for index, data in enumerate(iterate_raw_records(path)):
            yield parse_record(data, source=path, index=index, rgb_size=rgb_size, audio_size=audio_size)
