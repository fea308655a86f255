"""Input pipelines for the classifiers: YT8M TFRecords -> batches of model inputs (REFERENCE.md §1, §2, §5).

Frame-level records are parsed with `tf.io.parse_single_sequence_example`; each frame's byte
strings are decoded, the chosen features concatenated in `FeatureSpec.names` order and truncated /
zero-padded to `max_frames`, still as bytes. After batching, whole batches are dequantized in-graph
(a multiply-add checked bit for bit against `yt8m.pca.dequantize`), padding frames zeroed and every
frame's concatenated vector L2-normalised, as every starter model does. Labels become a multi-hot
vector. Video-level records (`mean_rgb`, `mean_audio`, concatenated and L2-normalised as the
starter does, unless a model was trained on the raw means) feed the video-level models; a frame-level
record without those context fields gives the mean of its dequantized frames instead.

Every element is a dict (`video_id`, `frames`, `num_frames`, `labels`) so that later readers
(segment labels, label weights) add keys without changing callers. Errors surfacing while a
dataset is iterated (corrupt shard, wrong byte lengths, labels out of range) are mapped to a
one-line `Yt8mError` naming the file by `RecordSource.reading()`, which re-checks the files one by
one in Python when TensorFlow reports a problem. `features_to_model_inputs` is the same transform
in numpy for `VideoFeatures` held in memory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from yt8m.data.records import (
    ID_KEY,
    LABELS_KEY,
    LEGACY_ID_KEY,
    check_record_files,
    iterate_raw_records,
    list_record_files,
)
from yt8m._tf import import_tensorflow_quietly
from yt8m.core import L2_EPSILON, FeatureSpec, VideoFeatures, Yt8mError
from yt8m.pca.quantization import QUANT_LEVELS, dequantize

VIDEO_LEVEL_PREFIX = "mean_"  # video-level records name the features mean_rgb, mean_audio
INTERLEAVE_CYCLE = 16  # shards read in parallel
READ_BUFFER_BYTES = 8 << 20

# Keys of every dataset element.
VIDEO_ID = "video_id"
FRAMES = "frames"
NUM_FRAMES = "num_frames"
LABELS = "labels"
QUANTIZED = "quantized"  # the uint8 frames between parsing and `finish_frames`


def dequantize_table(spec: FeatureSpec) -> np.ndarray:
    """The float value of every byte 0..255 under `spec`'s quantization range (numpy's dequantize)."""
    return dequantize(np.arange(256, dtype=np.uint8), spec.min_value, spec.max_value).astype(np.float32)


def video_level_key(name: str) -> str:
    """Context key of a feature in video-level records (`rgb` -> `mean_rgb`; `mean_rgb` stays)."""
    return name if name.startswith(VIDEO_LEVEL_PREFIX) else VIDEO_LEVEL_PREFIX + name


def frame_level_key(name: str) -> str:
    """Feature-list key of a feature in frame-level records (`mean_rgb` -> `rgb`)."""
    return name[len(VIDEO_LEVEL_PREFIX):] if name.startswith(VIDEO_LEVEL_PREFIX) else name


# ----------------------------------------------------------------------------- in-graph parsing


def _id_and_labels(context, num_classes: int):
    tf = import_tensorflow_quietly()
    video_id = tf.where(tf.strings.length(context[ID_KEY]) > 0, context[ID_KEY], context[LEGACY_ID_KEY])
    labels = context[LABELS_KEY].values
    checks = [
        tf.debugging.assert_less(
            labels, tf.constant(num_classes, tf.int64), message=f"a label is >= num_classes ({num_classes})"
        ),
        tf.debugging.assert_non_negative(labels, message="a label is negative"),
    ]
    with tf.control_dependencies(checks):
        multi_hot = tf.minimum(tf.reduce_sum(tf.one_hot(labels, num_classes, dtype=tf.float32), axis=0), 1.0)
    multi_hot.set_shape([num_classes])
    return video_id, multi_hot


def _decode_bytes(byte_rows, name: str, size: int):
    """[T] byte strings -> uint8 [T, size]; a wrong byte length fails an assertion."""
    tf = import_tensorflow_quietly()
    raw = tf.io.decode_raw(byte_rows, tf.uint8)
    check = tf.debugging.assert_equal(
        tf.size(raw), tf.shape(byte_rows)[0] * size, message=f"feature '{name}' has frames that are not {size} bytes"
    )
    with tf.control_dependencies([check]):
        return tf.reshape(raw, [-1, size])


def dequantize_constants(spec: FeatureSpec) -> tuple[np.float32, np.float32] | None:
    """(scale, offset) with `byte * scale + offset` equal to numpy's dequantize for all 256 bytes, or None.

    The graph then dequantizes with one multiply-add (twice as fast as a table lookup); should the
    numpy rule ever stop being affine in float32, the readers fall back to the exact table.
    """
    table = dequantize_table(spec)
    offset = table[0]
    scale = np.float32((spec.max_value - spec.min_value) / QUANT_LEVELS)
    affine = np.arange(256, dtype=np.float32) * scale + offset
    return (scale, offset) if np.array_equal(affine, table) else None


def dequantize_tensor(quantized, spec: FeatureSpec):
    """uint8 tensor -> float32 tensor of the same shape, bit-identical to `yt8m.pca.dequantize`."""
    tf = import_tensorflow_quietly()
    constants = dequantize_constants(spec)
    if constants is None:
        return tf.gather(tf.constant(dequantize_table(spec)), tf.cast(quantized, tf.int32))
    scale, offset = constants
    return tf.cast(quantized, tf.float32) * tf.constant(scale) + tf.constant(offset)


def finish_frames(element: dict, spec: FeatureSpec) -> dict:
    """Quantized frames (`quantized` uint8 [..., T, D]) -> `frames` float32: dequantized, padding
    rows zeroed (by `num_frames`), each frame L2-normalised. Works on one record or a batch."""
    tf = import_tensorflow_quietly()
    element = dict(element)
    quantized = element.pop(QUANTIZED)
    frames = dequantize_tensor(quantized, spec)
    valid = tf.sequence_mask(element[NUM_FRAMES], tf.shape(quantized)[-2], dtype=tf.float32)
    frames = tf.math.l2_normalize(frames * valid[..., None], axis=-1, epsilon=L2_EPSILON)
    element[FRAMES] = frames
    return element


def normalize_video_vector(features):
    """L2-normalise video-level inputs [..., D] along the last axis (the starter's
    `tf.nn.l2_normalize(model_input_raw, feature_dim)`, epsilon 1e-12 as its default)."""
    tf = import_tensorflow_quietly()
    return tf.math.l2_normalize(features, axis=-1, epsilon=L2_EPSILON)


def _context_spec() -> dict:
    tf = import_tensorflow_quietly()
    return {
        ID_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LEGACY_ID_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABELS_KEY: tf.io.VarLenFeature(tf.int64),
    }


def parse_frame_bytes(serialized, spec: FeatureSpec, num_classes: int) -> dict:
    """One serialized frame-level SequenceExample -> {video_id, quantized uint8 [T, D], num_frames, labels [C]}.

    T is `spec.max_frames`: the features are concatenated in `spec.names` order, truncated and
    zero-padded, still quantized (`finish_frames` makes the floats, after batching).
    """
    tf = import_tensorflow_quietly()
    sequence_spec = {name: tf.io.FixedLenSequenceFeature([], tf.string) for name in spec.names}
    context, sequences = tf.io.parse_single_sequence_example(
        serialized, context_features=_context_spec(), sequence_features=sequence_spec
    )
    video_id, labels = _id_and_labels(context, num_classes)
    lengths = [tf.shape(sequences[name])[0] for name in spec.names]
    same_length = [
        tf.debugging.assert_equal(length, lengths[0], message=f"features {', '.join(spec.names)} differ in frame count")
        for length in lengths[1:]
    ]
    with tf.control_dependencies(same_length):
        decoded = [
            _decode_bytes(sequences[name][: spec.max_frames], name, size)  # truncate before decoding
            for name, size in zip(spec.names, spec.sizes)
        ]
    quantized = tf.concat(decoded, axis=1) if len(decoded) > 1 else decoded[0]
    num_frames = tf.shape(quantized)[0]
    quantized = tf.pad(quantized, [[0, spec.max_frames - num_frames], [0, 0]])
    quantized.set_shape([spec.max_frames, spec.total_size])
    return {VIDEO_ID: video_id, QUANTIZED: quantized, NUM_FRAMES: tf.cast(num_frames, tf.int32), LABELS: labels}


def parse_frame_record(serialized, spec: FeatureSpec, num_classes: int) -> dict:
    """One serialized frame-level SequenceExample -> {video_id, frames [T, D], num_frames, labels [C]}.

    T is `spec.max_frames`. Frames are dequantized, concatenated in `spec.names` order, truncated
    and L2-normalised per frame; padding rows are zero. (Frame sampling for training, the seeds'
    `iterations` / `sample_random_frames`, happens inside the models.)
    """
    return finish_frames(parse_frame_bytes(serialized, spec, num_classes), spec)


def parse_video_record(serialized, spec: FeatureSpec, num_classes: int, normalize: bool = True) -> dict:
    """One serialized video-level Example (or frame-level record) -> {video_id, frames [D], num_frames, labels}.

    Uses `mean_<name>` from the context when present, else the mean of the dequantized frames.
    With `normalize` the concatenated vector is L2-normalised (`normalize_video_vector`), as the
    starter's train.py / eval.py do to every model input; `normalize=False` keeps the raw means.
    """
    tf = import_tensorflow_quietly()
    context_spec = _context_spec()
    for name in spec.names:
        context_spec[video_level_key(name)] = tf.io.VarLenFeature(tf.float32)
    sequence_spec = {
        frame_level_key(name): tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True) for name in spec.names
    }
    context, sequences = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    video_id, labels = _id_and_labels(context, num_classes)
    parts = []
    num_frames = None
    for name, size in zip(spec.names, spec.sizes):
        given = context[video_level_key(name)].values
        rows = sequences[frame_level_key(name)]
        count = tf.shape(rows)[0]
        num_frames = count if num_frames is None else num_frames
        has_mean = tf.size(given) > 0
        check = tf.debugging.Assert(
            tf.logical_or(tf.equal(tf.size(given), size), tf.logical_and(tf.logical_not(has_mean), count > 0)),
            [f"feature '{video_level_key(name)}' is missing or does not have {size} values"],
        )
        with tf.control_dependencies([check]):
            vector = tf.cond(
                has_mean,
                lambda given=given, size=size: tf.reshape(given, [size]),
                lambda rows=rows, name=name, size=size: tf.reduce_mean(
                    dequantize_tensor(_decode_bytes(rows, frame_level_key(name), size), spec), axis=0
                ),
            )
        parts.append(vector)
    features = tf.concat(parts, axis=0) if len(parts) > 1 else parts[0]
    features.set_shape([spec.total_size])
    if normalize:
        features = normalize_video_vector(features)
    num_frames = tf.where(num_frames > 0, tf.minimum(num_frames, spec.max_frames), 1)
    return {VIDEO_ID: video_id, FRAMES: features, NUM_FRAMES: tf.cast(num_frames, tf.int32), LABELS: labels}


# ----------------------------------------------------------------------------- datasets


def read_records(
    files: Sequence[str],
    *,
    shuffle: bool = False,
    seed: int | None = None,
    record_buffer: int | None = None,
    repeat: bool = False,
    deterministic: bool = True,
):
    """The serialized records of `files` as a `tf.data.Dataset`: a parallel interleave of the shards.

    `shuffle` shuffles the file order (each epoch); `repeat` repeats the records; `record_buffer`
    also shuffles the records within that many (after the repeat, as the starter's reader does).
    """
    tf = import_tensorflow_quietly()
    names = tf.data.Dataset.from_tensor_slices(list(files))
    if shuffle:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    records = names.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES),
        cycle_length=max(1, min(len(files), INTERLEAVE_CYCLE)),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    if repeat:
        records = records.repeat()
    if record_buffer is not None:
        records = records.shuffle(record_buffer, seed=seed, reshuffle_each_iteration=True)
    return records


class RecordSource:
    """The record files behind a pattern plus how to read them; builds datasets and explains their errors.

    `video_level=True` reads `mean_*` features for the video-level models, L2-normalised unless
    `normalize_video=False` (a model's `TrainingSettings.l2_normalize_video_inputs`).
    """

    def __init__(
        self,
        pattern: str | os.PathLike | Sequence[str],
        spec: FeatureSpec,
        num_classes: int,
        video_level: bool = False,
        normalize_video: bool = True,
    ) -> None:
        if isinstance(pattern, (list, tuple)):
            self.files = [f for part in pattern for f in list_record_files(part)]
        else:
            self.files = list_record_files(pattern)
        check_record_files(self.files)  # a file cut inside a record header: TensorFlow would stop silently
        self.spec = spec
        self.num_classes = int(num_classes)
        self.video_level = video_level
        self.normalize_video = bool(normalize_video)

    @classmethod
    def for_model(cls, pattern: str | os.PathLike | Sequence[str], config: Any) -> "RecordSource":
        """The records read as the model of `config` (a `ModelConfig`) takes them: its features,
        classes, video or frame level, and its video-level normalisation."""
        return cls(
            pattern,
            config.feature_spec,
            config.num_classes,
            video_level=config.video_level,
            normalize_video=config.training.l2_normalize_video_inputs,
        )

    def parse(self, serialized) -> dict:
        if self.video_level:
            return parse_video_record(serialized, self.spec, self.num_classes, self.normalize_video)
        return parse_frame_record(serialized, self.spec, self.num_classes)

    def dataset(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int | None = None,
        shuffle_buffer: int = 1024,
        drop_remainder: bool = False,
        repeat: bool = False,
        include_ids: bool = True,
        deterministic: bool | None = None,
    ):
        """A batched, prefetched `tf.data.Dataset` of parsed records (one pass unless `repeat`).

        Shards are read with a parallel interleave; with `shuffle` the file order and the records
        (within `shuffle_buffer`) are shuffled, and the element order is not deterministic unless
        `deterministic=True` (then one seed gives one order: training resumes mid-epoch with it).
        `include_ids=False` drops the string `video_id` (training batches, which may go to GPUs).
        """
        tf = import_tensorflow_quietly()
        autotune = tf.data.AUTOTUNE
        order_fixed = (not shuffle) if deterministic is None else bool(deterministic)
        records = read_records(
            self.files, shuffle=shuffle, seed=seed, record_buffer=shuffle_buffer if shuffle else None,
            repeat=repeat, deterministic=order_fixed,
        )

        def parse(data):
            if self.video_level:
                element = parse_video_record(data, self.spec, self.num_classes, self.normalize_video)
            else:
                element = parse_frame_bytes(data, self.spec, self.num_classes)
            element = refuse_unusable(element, self.video_level)
            return element if include_ids else {k: v for k, v in element.items() if k != VIDEO_ID}

        parsed = records.map(parse, num_parallel_calls=autotune, deterministic=order_fixed)
        batches = parsed.batch(batch_size, drop_remainder=drop_remainder)
        if not self.video_level:  # dequantize + normalise whole batches: far fewer, larger ops
            batches = batches.map(
                lambda batch: finish_frames(batch, self.spec), num_parallel_calls=autotune, deterministic=order_fixed
            )
        return batches.prefetch(autotune)

    def iterate(self, batch_size: int, **options) -> Iterator[dict]:
        """Numpy batches of `dataset(batch_size, **options)`, with errors mapped to `Yt8mError`."""
        dataset = self.dataset(batch_size, **options)
        with self.reading():
            for batch in dataset.as_numpy_iterator():
                yield batch

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Turn a TensorFlow error raised while iterating this source into a `Yt8mError` naming the file."""
        tf = import_tensorflow_quietly()
        try:
            yield
        except tf.errors.OpError as error:
            problem = self.find_problem()
            if problem is not None:
                raise problem from None
            raise error

    def find_problem(self) -> Yt8mError | None:
        """Check every file record by record in Python; the first problem found, or None."""
        for path in self.files:
            try:
                for index, data in enumerate(iterate_raw_records(path)):
                    check_record(data, self.spec, self.num_classes, self.video_level, f"{path}: record {index}")
            except Yt8mError as problem:
                return problem
        return None


def refuse_unusable(element: dict, video_level: bool) -> dict:
    """Fail (an in-graph assertion, explained by `check_record`) on a record without a video id or,
    frame-level, without frames: neither can be trained on, scored or written to a predictions CSV."""
    tf = import_tensorflow_quietly()
    checks = [tf.debugging.assert_greater(tf.strings.length(element[VIDEO_ID]), 0, message="a record has no video id")]
    if not video_level:
        checks.append(tf.debugging.assert_positive(element[NUM_FRAMES], message="a record has zero frames"))
    with tf.control_dependencies(checks):
        return {key: tf.identity(value) for key, value in element.items()}


def check_record(data: bytes, spec: FeatureSpec, num_classes: int, video_level: bool, where: str) -> None:
    """Validate one serialized record against what the in-graph parser expects; `Yt8mError` if not."""
    tf = import_tensorflow_quietly()
    try:
        proto = tf.train.SequenceExample.FromString(data)
    except Exception as error:  # protobuf's DecodeError and friends
        raise Yt8mError(f"{where}: not a tf.train.SequenceExample or Example ({error})") from None
    context = proto.context.feature
    for key in (ID_KEY, LEGACY_ID_KEY):
        if key in context:
            ids = context[key].bytes_list.value
            if len(ids) != 1:
                raise Yt8mError(f"{where}: context '{key}' must hold one bytes value, has {len(ids)}")
            if ids[0]:
                where = f"{where} (id {ids[0].decode('utf-8', errors='replace')!r})"
                break
    else:
        raise Yt8mError(f"{where}: has no video id (context '{ID_KEY}' is missing or empty)")
    if LABELS_KEY in context:
        labels = list(context[LABELS_KEY].int64_list.value)
        if context[LABELS_KEY].WhichOneof("kind") not in (None, "int64_list"):
            raise Yt8mError(f"{where}: context 'labels' must be int64")
        bad = [label for label in labels if label < 0 or label >= num_classes]
        if bad:
            raise Yt8mError(
                f"{where}: label {bad[0]} is outside 0..{num_classes - 1}; pass `num_classes` for a custom dataset"
            )
    lists = proto.feature_lists.feature_list
    lengths = {}
    for name, size in zip(spec.names, spec.sizes):
        frame_key = frame_level_key(name) if video_level else name
        mean_key = video_level_key(name)
        if video_level and mean_key in context:
            count = len(context[mean_key].float_list.value)
            if count != size:
                raise Yt8mError(f"{where}: '{mean_key}' has {count} float values, expected {size}")
            continue
        if frame_key not in lists:
            wanted = f"'{mean_key}' or '{frame_key}'" if video_level else f"'{frame_key}'"
            raise Yt8mError(f"{where}: has no {wanted} feature (features: {','.join(spec.names)})")
        frames = lists[frame_key].feature
        if video_level and not frames:
            raise Yt8mError(f"{where}: has no '{mean_key}' and no '{frame_key}' frames")
        for frame, feature in enumerate(frames):
            values = feature.bytes_list.value
            if len(values) != 1 or len(values[0]) != size:
                got = f"{len(values[0])} bytes" if len(values) == 1 else f"{len(values)} values"
                raise Yt8mError(f"{where}: frame {frame} of feature '{frame_key}' has {got}, expected {size} bytes")
        lengths[frame_key] = len(frames)
    if not video_level and lengths and not any(lengths.values()):
        raise Yt8mError(f"{where}: has zero frames; a frame-level record needs at least one")
    if not video_level and len(set(lengths.values())) > 1:
        detail = ", ".join(f"'{key}' {count}" for key, count in lengths.items())
        raise Yt8mError(f"{where}: features have different frame counts ({detail})")


# ----------------------------------------------------------------------------- numpy transform


def _feature_array(video: VideoFeatures, name: str) -> np.ndarray:
    key = frame_level_key(name)
    if key in ("rgb", "audio"):
        return np.asarray(getattr(video, key))
    if key in video.extras:
        return np.asarray(video.extras[key])
    raise Yt8mError(f"video {video.video_id!r}: has no feature '{key}'")


def features_to_model_inputs(
    videos: Sequence[VideoFeatures], spec: FeatureSpec, video_level: bool = False, normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """In-memory `VideoFeatures` -> the model inputs the readers produce, with the same constants.

    Frame-level: (frames float32 [N, max_frames, D], num_frames int32 [N]). Video-level:
    (features float32 [N, D], num_frames int32 [N]) from `mean_*` or the mean of the frames.
    `normalize=False` leaves out the L2 normalisation (per frame; of the video-level vector), for
    graphs that do it themselves and for video-level models trained on raw means.
    """
    table = dequantize_table(spec)
    inputs, counts = [], []
    for video in videos:
        parts = []
        frame_count = None
        for name, size in zip(spec.names, spec.sizes):
            quantized = _feature_array(video, name)
            if quantized.ndim != 2 or quantized.shape[1] != size:
                raise Yt8mError(
                    f"video {video.video_id!r}: feature '{frame_level_key(name)}' has shape {quantized.shape}, "
                    f"expected [frames, {size}]"
                )
            if frame_count is not None and quantized.shape[0] != frame_count:
                raise Yt8mError(f"video {video.video_id!r}: features have different frame counts")
            frame_count = quantized.shape[0]
            if video_level:
                given = getattr(video, video_level_key(name), None) if frame_level_key(name) in ("rgb", "audio") else None
                if given is not None:
                    parts.append(np.asarray(given, dtype=np.float32).reshape(size))
                elif quantized.shape[0] > 0:
                    parts.append(table[quantized].mean(axis=0, dtype=np.float32))
                else:
                    raise Yt8mError(f"video {video.video_id!r}: has no frames and no '{video_level_key(name)}'")
            else:
                parts.append(table[quantized[: spec.max_frames]])
        if video_level:
            vector = np.concatenate(parts).astype(np.float32)
            if normalize:
                vector /= np.sqrt(np.maximum(np.sum(vector * vector), L2_EPSILON))
            inputs.append(vector)
            counts.append(min(frame_count, spec.max_frames) if frame_count else 1)
            continue
        frames = np.concatenate(parts, axis=1)
        padded = np.zeros((spec.max_frames, spec.total_size), dtype=np.float32)
        padded[: frames.shape[0]] = frames
        if normalize:
            padded /= np.sqrt(np.maximum(np.sum(padded * padded, axis=1, keepdims=True), L2_EPSILON))
        inputs.append(padded)
        counts.append(frames.shape[0])
    width = spec.total_size
    shape = (0, width) if video_level else (0, spec.max_frames, width)
    stacked = np.stack(inputs).astype(np.float32) if inputs else np.zeros(shape, dtype=np.float32)
    return stacked, np.asarray(counts, dtype=np.int32)


def labels_to_multi_hot(labels: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """Lists of class indices -> float32 multi-hot [N, num_classes] (out-of-range -> `Yt8mError`)."""
    out = np.zeros((len(labels), num_classes), dtype=np.float32)
    for row, video_labels in enumerate(labels):
        for label in video_labels:
            if not 0 <= label < num_classes:
                raise Yt8mError(f"label {label} is outside 0..{num_classes - 1}")
            out[row, label] = 1.0
    return out
