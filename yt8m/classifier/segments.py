"""The 2019 segment task: segment readers with label weights, segment models, TTA, the segment CSV.

A segment record (REFERENCE.md §1) is a frame-level SequenceExample whose context lists rated
segments: `segment_start_times` (frames = seconds), `segment_labels` and `segment_scores` (1 =
present, 0 = rated absent). `SegmentSource` turns every distinct start of a video into one
example: its `SEGMENT_FRAMES` frames, `labels` [C] (rated present) and `label_weights` [C] (1 for
every rated class of that segment, 0 elsewhere), so that only rated (segment, class) pairs count
in the loss (the train step multiplies the per-class cross-entropy by them) and in the metric
(`SegmentMapAccumulator` keeps rated pairs only). A video train dir continued on segment labels
trains as the 2019 9th place did (`segment_label_weighting="all-classes"`: no label weights, every
unrated class a negative); a new segment train dir keeps the rated pairs only. Records without segment starts (a test set)
give every non-overlapping window starting at 0.

Models (`ModelConfig.segments`):
- "segment": the video model itself, fed only the segment's 5 frames (video-level models get the
  mean of the segment's frames);
- "context": `SegmentContextModel` runs the same model on the segment and on the whole video and
  mixes both with learned per-class weights: `sigmoid(a * logit(p_segment) + b * logit(p_video) + c)`,
  starting at a=1, b=0, c=0 (the segment-only model). Its input is the segment frames followed by
  the video's `max_frames` frames along the time axis.

Test-time augmentation (`tta.py`, the 2019 9th place's): with `shifts` (e.g. -1,0,1) each segment
is also read from the padded video `np.roll`ed by each shift (wrap-around; shift -1 reads frames
s+1..s+5), or with `tta_mode="clamp"` from a window moved by -shift and clamped inside the video;
the predictions are averaged, or with `tta_combine="rank"` the per-shift rankings are fused.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.config import SEGMENT_ALL_CLASSES, SEGMENT_MODES
from yt8m.classifier.metrics import SEGMENT_TOP_K
from yt8m.classifier.readers import (
    FRAMES,
    LABELS,
    NUM_FRAMES,
    VIDEO_ID,
    RecordSource,
    read_records,
    _context_spec,
    _decode_bytes,
    _id_and_labels,
    dequantize_tensor,
    normalize_video_vector,
)
from yt8m.classifier.tta import DEFAULT_TTA_MODE, check_tta_mode, segment_map_of_ranking, shifted_windows
from yt8m.core import L2_EPSILON, NUM_CLASSES, SEGMENT_FRAMES, Yt8mError
from yt8m.data.files import atomic_path
from yt8m.data.records import ID_KEY, LEGACY_ID_KEY, iterate_raw_records, list_record_files
from yt8m.data.vocabulary import load_segment_classes

SEGMENT_CSV_HEADER = "Class,Segments"
SEGMENT_ID_SEPARATOR = ":"  # segment ids are `video_id:start`
DEFAULT_TTA_SHIFTS = (0,)
START_KEY = "segment_start_times"
END_KEY = "segment_end_times"
SEGMENT_LABELS_KEY = "segment_labels"
SEGMENT_SCORES_KEY = "segment_scores"

# Keys of segment dataset elements (besides video_id, frames, num_frames, labels).
SEGMENT_START = "segment_start"
LABEL_WEIGHTS = "label_weights"
_QUANTIZED = "segment_quantized"  # [K, SEGMENT_FRAMES, D] uint8, one window per shift
_COUNTS = "segment_counts"  # [K] valid frames per window
_VALID = "segment_valid"  # [K, SEGMENT_FRAMES] 1 for a frame of the video, 0 for padding (tta.shifted_windows)
_VIDEO_QUANTIZED = "video_quantized"  # [max_frames, D] uint8 (context models)
_VIDEO_FRAMES = "video_frames"


# ----------------------------------------------------------------------------- options


def parse_shifts(text: str | Sequence[int] | None) -> tuple[int, ...]:
    """`-2,-1,0,1` -> (-2, -1, 0, 1); None or empty -> (0,) (no augmentation)."""
    if text is None:
        return DEFAULT_TTA_SHIFTS
    if not isinstance(text, str):
        values = tuple(int(v) for v in text)
    else:
        try:
            values = tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise Yt8mError(f"`tta_shifts` must be comma-separated integers, got {text!r}") from None
    if not values:
        return DEFAULT_TTA_SHIFTS
    if len(set(values)) != len(values):
        raise Yt8mError(f"`tta_shifts` lists a shift twice: {text!r}")
    return values


def resolve_segment_classes(path: str | os.PathLike | None, num_classes: int) -> list[int] | None:
    """The rated-class whitelist: from `path`, else the cached official file for the 3862-class
    YT8M label space, else None (a custom dataset: every class counts)."""
    if path is None and num_classes != NUM_CLASSES:
        return None
    classes = load_segment_classes(path)
    where = path if path is not None else "segment_label_ids.csv"
    if not classes:
        raise Yt8mError(f"{where}: lists no segment classes")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise Yt8mError(f"{where}: class {bad[0]} is outside 0..{num_classes - 1}")
    return classes


def segment_id(video_id: str, start: int) -> str:
    """The Kaggle segment id `vid:start` (start in seconds = frame index)."""
    return f"{video_id}{SEGMENT_ID_SEPARATOR}{int(start)}"


# ----------------------------------------------------------------------------- reader


def parse_segment_bytes(
    serialized,
    spec,
    num_classes: int,
    shifts: Sequence[int] = DEFAULT_TTA_SHIFTS,
    context: bool = False,
    tta_mode: str = DEFAULT_TTA_MODE,
) -> dict:
    """One serialized segment record -> a batch of its segments (leading axis N = distinct starts).

    Keys: video_id [N], segment_start [N], segment_quantized uint8 [N, K, 5, D] (one window per
    shift), segment_counts [N, K], labels [N, C], label_weights [N, C]; with `context` also the
    video's first `max_frames` frames [N, max_frames, D] and their count.
    """
    tf = import_tensorflow_quietly()
    context_spec = _context_spec()
    context_spec[START_KEY] = tf.io.VarLenFeature(tf.int64)
    context_spec[SEGMENT_LABELS_KEY] = tf.io.VarLenFeature(tf.int64)
    context_spec[SEGMENT_SCORES_KEY] = tf.io.VarLenFeature(tf.float32)
    sequence_spec = {name: tf.io.FixedLenSequenceFeature([], tf.string) for name in spec.names}
    parsed, sequences = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    video_id, _ = _id_and_labels(parsed, num_classes)
    decoded = [_decode_bytes(sequences[name], name, size) for name, size in zip(spec.names, spec.sizes)]
    quantized = tf.concat(decoded, axis=1) if len(decoded) > 1 else decoded[0]
    num_frames = tf.shape(quantized)[0]

    given_starts = tf.cast(parsed[START_KEY].values, tf.int32)
    labels = parsed[SEGMENT_LABELS_KEY].values
    scores = parsed[SEGMENT_SCORES_KEY].values
    windows = tf.range(0, num_frames - SEGMENT_FRAMES + 1, SEGMENT_FRAMES, dtype=tf.int32)
    starts = tf.cond(
        tf.size(given_starts) > 0,
        lambda: tf.sort(tf.unique(given_starts)[0]),
        lambda: windows,
    )
    checks = [
        tf.debugging.assert_equal(tf.size(labels), tf.size(given_starts), message="segment_labels and segment_start_times differ in length"),
        tf.debugging.assert_equal(tf.size(scores), tf.size(labels), message="segment_scores and segment_labels differ in length"),
        tf.debugging.assert_less(labels, tf.constant(num_classes, tf.int64), message=f"a segment label is >= num_classes ({num_classes})"),
        tf.debugging.assert_non_negative(labels, message="a segment label is negative"),
        tf.debugging.assert_non_negative(given_starts, message="a segment start is negative"),
    ]
    count = tf.shape(starts)[0]
    with tf.control_dependencies(checks):
        position = tf.searchsorted(starts, given_starts, side="left")
        pairs = tf.stack([position, tf.cast(labels, tf.int32)], axis=1)
        shape = tf.stack([count, num_classes])
        weights = tf.minimum(tf.scatter_nd(pairs, tf.ones_like(scores), shape), 1.0)
        present = tf.minimum(tf.scatter_nd(pairs, tf.cast(scores > 0, tf.float32), shape), 1.0)
    weights.set_shape([None, num_classes])
    present.set_shape([None, num_classes])

    windows_q, counts, valid = shifted_windows(quantized, starts, shifts, spec.max_frames, tta_mode)
    element = {
        VIDEO_ID: tf.fill([count], video_id),
        SEGMENT_START: starts,
        _QUANTIZED: windows_q,
        _COUNTS: counts,
        _VALID: valid,
        LABELS: present,
        LABEL_WEIGHTS: weights,
    }
    element[_QUANTIZED].set_shape([None, len(shifts), SEGMENT_FRAMES, spec.total_size])
    if context:
        video = quantized[: spec.max_frames]
        frames = tf.shape(video)[0]
        video = tf.pad(video, [[0, spec.max_frames - frames], [0, 0]])
        element[_VIDEO_QUANTIZED] = tf.tile(video[None], [count, 1, 1])
        element[_VIDEO_FRAMES] = tf.fill([count], frames)
    return element


def _normalised(quantized, counts, spec, valid=None):
    """uint8 [..., T, D] -> float32 frames, rows past `counts` (or where `valid` is 0) zeroed, each row L2-normalised."""
    tf = import_tensorflow_quietly()
    frames = dequantize_tensor(quantized, spec)
    if valid is None:
        valid = tf.sequence_mask(counts, tf.shape(quantized)[-2], dtype=tf.float32)
    return tf.math.l2_normalize(frames * valid[..., None], axis=-1, epsilon=L2_EPSILON)


def finish_segments(
    batch: dict, spec, mode: str, video_level: bool, squeeze: bool, normalize_video: bool = True
) -> dict:
    """Batched parsed segments -> model inputs: `frames` [B, K, T, D] and `num_frames` [B, K].

    "segment": T = 5 (video-level models: the mean of the segment's dequantized frames [B, K, D],
    L2-normalised as whole-video inputs unless `normalize_video=False`);
    "context": T = 5 + max_frames (segment, then the video) and num_frames = the video's frames.
    `squeeze` drops the shift axis K (training uses one window).
    """
    tf = import_tensorflow_quietly()
    batch = dict(batch)
    quantized = batch.pop(_QUANTIZED)
    counts = batch.pop(_COUNTS)
    rows = batch.pop(_VALID)  # padding rows (tta.shifted_windows)
    if video_level:
        frames = dequantize_tensor(quantized, spec)
        valid = rows[..., None]
        frames = tf.reduce_sum(frames * valid, axis=-2) / tf.maximum(tf.reduce_sum(valid, axis=-2), 1.0)
        if normalize_video:
            frames = normalize_video_vector(frames)
        num_frames = counts
    else:
        frames = _normalised(quantized, counts, spec, rows)
        num_frames = counts
    if mode == "context":
        video = _normalised(batch.pop(_VIDEO_QUANTIZED), batch[_VIDEO_FRAMES], spec)
        shifts = tf.shape(frames)[1]
        video = tf.tile(video[:, None], [1, shifts, 1, 1])
        frames = tf.concat([frames, video], axis=2)
        num_frames = tf.tile(batch.pop(_VIDEO_FRAMES)[:, None], [1, shifts])
    if squeeze:
        frames, num_frames = frames[:, 0], num_frames[:, 0]
    batch[FRAMES] = frames
    batch[NUM_FRAMES] = num_frames
    return batch


class SegmentSource(RecordSource):
    """Segment records -> batches of segments with labels and label weights (see the module doc).

    A drop-in for `RecordSource` in the train loop (`frames`, `num_frames`, `labels`,
    `label_weights`); eval and predict also read `video_id` and `segment_start`, and with several
    `shifts` `frames` carries a shift axis ([B, K, T, D]).
    """

    def __init__(
        self,
        pattern,
        spec,
        num_classes: int,
        video_level: bool = False,
        mode: str = "segment",
        shifts: Sequence[int] = DEFAULT_TTA_SHIFTS,
        tta_mode: str = DEFAULT_TTA_MODE,
        normalize_video: bool = True,
        unrated_negative: bool = False,
    ) -> None:
        super().__init__(pattern, spec, num_classes, video_level=video_level, normalize_video=normalize_video)
        self.unrated_negative = bool(unrated_negative)  # drop `label_weights`: every class counts
        self.tta_mode = check_tta_mode(tta_mode)
        if mode not in SEGMENT_MODES:
            raise Yt8mError(f"segment mode must be one of {', '.join(SEGMENT_MODES)}, got {mode!r}")
        if mode == "context" and video_level:
            raise Yt8mError("a video-level model cannot see the video as context; use a frame-level model")
        self.mode = mode
        self.shifts = tuple(int(s) for s in shifts)

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
        squeeze: bool | None = None,
    ):
        tf = import_tensorflow_quietly()
        autotune = tf.data.AUTOTUNE
        order_fixed = (not shuffle) if deterministic is None else bool(deterministic)
        records = read_records(self.files, shuffle=shuffle, seed=seed, repeat=repeat, deterministic=order_fixed)
        context = self.mode == "context"
        segments = records.map(
            lambda data: parse_segment_bytes(data, self.spec, self.num_classes, self.shifts, context, self.tta_mode),
            num_parallel_calls=autotune,
            deterministic=order_fixed,
        ).unbatch()
        if shuffle:
            segments = segments.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        dropped = (VIDEO_ID, SEGMENT_START) if not include_ids else ()
        dropped += (LABEL_WEIGHTS,) if self.unrated_negative else ()
        if dropped:
            segments = segments.map(lambda e: {k: v for k, v in e.items() if k not in dropped})
        squeeze = len(self.shifts) == 1 if squeeze is None else squeeze
        batches = segments.batch(batch_size, drop_remainder=drop_remainder).map(
            lambda batch: finish_segments(batch, self.spec, self.mode, self.video_level, squeeze, self.normalize_video),
            num_parallel_calls=autotune,
            deterministic=order_fixed,
        )
        return batches.prefetch(autotune)

    def find_problem(self) -> Yt8mError | None:
        problem = super().find_problem()
        if problem is not None:
            return problem
        for path in self.files:
            for index, data in enumerate(iterate_raw_records(path)):
                try:
                    video_id, _, labels, _ = segment_context(data, f"{path}: record {index}")
                except Yt8mError as problem:
                    return problem
                bad = [label for label in labels if not 0 <= label < self.num_classes]
                if bad:
                    return Yt8mError(
                        f"{path}: record {index} (id {video_id!r}): segment label {bad[0]} is outside 0..{self.num_classes - 1}"
                    )
        return None


def check_segment_labels(pattern, records_to_check: int = 100) -> None:
    """Refuse training on segment labels when the first records of the first file rate no segment.

    (Records without segment fields would give all-zero label weights: training would learn nothing.)
    """
    files = [f for part in pattern for f in list_record_files(part)] if isinstance(pattern, (list, tuple)) else list_record_files(pattern)
    for index, data in enumerate(iterate_raw_records(files[0])):
        if segment_context(data, f"{files[0]}: record {index}")[1]:
            return
        if index + 1 >= records_to_check:
            break
    raise Yt8mError(
        f"{files[0]}: its first records rate no segments (no segment_start_times/labels/scores); "
        "`segment_labels` needs the 2019 segment-rated records"
    )


def segment_context(data: bytes, where: str) -> tuple[str, list[int], list[int], list[float]]:
    """(video id, segment starts, labels, scores) of one serialized record, checked for equal lengths."""
    tf = import_tensorflow_quietly()
    try:
        context = tf.train.SequenceExample.FromString(data).context.feature
    except Exception as error:  # protobuf's DecodeError and friends
        raise Yt8mError(f"{where}: not a tf.train.SequenceExample ({error})") from None
    key = ID_KEY if ID_KEY in context else LEGACY_ID_KEY
    video_id = context[key].bytes_list.value[0].decode("utf-8", errors="replace") if key in context and context[key].bytes_list.value else ""
    starts = list(context[START_KEY].int64_list.value) if START_KEY in context else []
    labels = list(context[SEGMENT_LABELS_KEY].int64_list.value) if SEGMENT_LABELS_KEY in context else []
    scores = list(context[SEGMENT_SCORES_KEY].float_list.value) if SEGMENT_SCORES_KEY in context else []
    if not len(starts) == len(labels) == len(scores):
        raise Yt8mError(
            f"{where} (id {video_id!r}): segment_start_times, segment_labels and segment_scores differ in length"
        )
    return video_id, starts, labels, scores


# ----------------------------------------------------------------------------- models


@functools.cache
def _make_context_model_class():
    """The Keras class, made on first use so that importing this module does not load TensorFlow."""
    keras = import_tensorflow_quietly().keras
    ops = keras.ops

    class SegmentContextModel(keras.Model):
        """The segment model plus the whole video as context, mixed per class in logit space."""

        def __init__(self, base, **kwargs):
            super().__init__(name=kwargs.pop("name", "segment_context"), **kwargs)
            self.base = base
            classes = base.num_classes
            self.num_classes = classes
            self.video_level = False
            self.segment_gain = self.add_weight(shape=(classes,), initializer="ones", name="segment_gain")
            self.video_gain = self.add_weight(shape=(classes,), initializer="zeros", name="video_gain")
            self.context_bias = self.add_weight(shape=(classes,), initializer="zeros", name="context_bias")

        def head_variables(self) -> list:
            """The base model's head plus the per-class mixing weights: all depend on the label space."""
            mixing = {id(v) for v in (self.segment_gain, self.video_gain, self.context_bias)}
            head = {id(v) for v in self.base.head_variables()} | mixing
            return [v for v in self.variables if id(v) in head]

        def body_variables(self) -> list:
            """The base model's body (pooling, hidden layers), shared by the segment and the video."""
            head = {id(v) for v in self.head_variables()}
            return [v for v in self.variables if id(v) not in head]

        def call(self, inputs, training=None, labels=None, label_weights=None):
            # The train step passes the labels for models with label losses of their own; the base
            # model runs twice here (segment, video), so it gets none (no branch losses added).
            frames, num_frames = inputs
            frames = ops.convert_to_tensor(frames, dtype="float32")
            segment, video = frames[:, :SEGMENT_FRAMES], frames[:, SEGMENT_FRAMES:]
            present = ops.cast(ops.sum(ops.abs(segment), axis=-1) > 0, "int32")
            p_segment = self.base((segment, ops.sum(present, axis=1)), training=training)
            p_video = self.base((video, num_frames), training=training)
            eps = 1e-6

            def logit(p):
                p = ops.clip(p, eps, 1.0 - eps)
                return ops.log(p) - ops.log(1.0 - p)

            mixed = self.segment_gain * logit(p_segment) + self.video_gain * logit(p_video) + self.context_bias
            return ops.sigmoid(mixed)

    return SegmentContextModel


def wrap_segment_model(model, config):
    """The model `ModelConfig.segments` asks for: the video model itself, or it with video context.

    The base model is built (its weights created) first, so that its weight paths are the ones a
    video-level train dir holds and `--init-from` copies them.
    """
    mode = config.segments
    if mode is None:
        return model
    if mode not in SEGMENT_MODES:
        raise Yt8mError(f"config.json: segments must be one of {', '.join(SEGMENT_MODES)}, got {mode!r}")
    if mode == "segment":
        return model
    if config.video_level:
        raise Yt8mError(f"{config.model} is a video-level model: it cannot see the video as context")
    wrapped = _make_context_model_class()(model)
    width = config.feature_spec.total_size
    dummy = np.zeros((1, SEGMENT_FRAMES + 2, width), dtype=np.float32)
    dummy[:, 0] = 1.0
    wrapped((dummy, np.ones((1,), dtype=np.int32)), training=False)
    return wrapped


# ----------------------------------------------------------------------------- prediction


@dataclass
class SegmentBatch:
    segment_ids: list[str]
    predictions: np.ndarray  # float32 [B, C], averaged over the TTA shifts
    labels: np.ndarray  # float32 [B, C] rated present
    weights: np.ndarray  # float32 [B, C] rated (0/1)
    shift_predictions: np.ndarray | None = None  # float32 [B, K, C], one per TTA shift (for rank fusion)


def segment_source(
    pattern,
    config,
    shifts: Sequence[int] = DEFAULT_TTA_SHIFTS,
    tta_mode: str = DEFAULT_TTA_MODE,
    for_training: bool = False,
) -> SegmentSource:
    """A `SegmentSource` reading what `config`'s model takes (a video model counts as "segment").

    `for_training` applies the config's `segment_label_weighting`: with "all-classes" (the 2019
    9th place's fine-tuning) the batches carry no `label_weights`, so every class of a rated
    segment counts and the unrated ones are negatives. Evaluation always keeps the rated pairs.
    """
    weighting = config.training.segment_label_weighting if for_training else None
    return SegmentSource(
        pattern,
        config.feature_spec,
        config.num_classes,
        video_level=config.video_level,
        mode=config.segments or "segment",
        shifts=shifts,
        tta_mode=tta_mode,
        normalize_video=config.training.l2_normalize_video_inputs,
        unrated_negative=weighting == SEGMENT_ALL_CLASSES,
    )


def predict_segment_batches(
    pattern,
    model,
    config,
    batch_size: int = 256,
    shifts: Sequence[int] = DEFAULT_TTA_SHIFTS,
    tta_mode: str = DEFAULT_TTA_MODE,
) -> Iterator[SegmentBatch]:
    """Run `model` over every segment of the records, averaging the predictions over `shifts`
    (each shift's own predictions kept in `shift_predictions` when there are several)."""
    tf = import_tensorflow_quietly()
    if batch_size < 1:
        raise Yt8mError(f"`batch_size` must be >= 1, got {batch_size}")
    source = segment_source(pattern, config, shifts, tta_mode)

    @tf.function(reduce_retracing=True)
    def forward(frames, num_frames):
        shape = tf.shape(frames)
        flat = tf.reshape(frames, tf.concat([[-1], shape[2:]], axis=0))
        scores = model((flat, tf.reshape(num_frames, [-1])), training=False)
        return tf.reshape(scores, [shape[0], shape[1], -1])

    for batch in source.iterate(batch_size, squeeze=False):
        per_shift = forward(tf.constant(batch[FRAMES]), tf.constant(batch[NUM_FRAMES])).numpy().astype(np.float32, copy=False)
        ids = [segment_id(v.decode("utf-8", errors="replace"), s) for v, s in zip(batch[VIDEO_ID], batch[SEGMENT_START])]
        yield SegmentBatch(
            ids,
            per_shift.mean(axis=1),
            batch[LABELS],
            batch[LABEL_WEIGHTS],
            per_shift if per_shift.shape[1] > 1 else None,
        )


class SegmentRanking:
    """Per class the best `max_pred` segments so far (score desc, earlier segments first on ties).

    Memory: at most about 2 x max_pred (score, row) pairs per class; segment ids are kept once.
    """

    def __init__(self, class_ids: Sequence[int], max_pred: int = SEGMENT_TOP_K) -> None:
        if max_pred < 1:
            raise Yt8mError(f"`max_pred` must be >= 1, got {max_pred}")
        self.class_ids = np.asarray(sorted(set(int(c) for c in class_ids)), dtype=np.int64)
        self.max_pred = int(max_pred)
        self.ids: list[str] = []
        self._scores: list[list[np.ndarray]] = [[] for _ in self.class_ids]
        self._rows: list[list[np.ndarray]] = [[] for _ in self.class_ids]
        self._sizes = np.zeros(len(self.class_ids), dtype=np.int64)

    def add(self, segment_ids: Sequence[str], predictions: np.ndarray) -> None:
        offset = len(self.ids)
        self.ids.extend(segment_ids)
        rows = np.arange(offset, offset + len(segment_ids), dtype=np.int64)
        sub = np.asarray(predictions, dtype=np.float32)[:, self.class_ids]
        for j in range(len(self.class_ids)):
            self._scores[j].append(sub[:, j].copy())
            self._rows[j].append(rows)
            self._sizes[j] += len(rows)
            if self._sizes[j] > 2 * self.max_pred:
                self._prune(j)

    def _prune(self, j: int) -> None:
        scores = np.concatenate(self._scores[j])
        rows = np.concatenate(self._rows[j])
        order = np.lexsort((rows, -scores))[: self.max_pred]
        self._scores[j], self._rows[j] = [scores[order]], [rows[order]]
        self._sizes[j] = order.size

    def ranked(self) -> Iterator[tuple[int, list[str]]]:
        """(class id, segment ids best first) for every whitelisted class."""
        for j, class_id in enumerate(self.class_ids):
            if self._scores[j]:
                self._prune(j)
                rows = self._rows[j][0]
            else:
                rows = np.zeros(0, dtype=np.int64)
            yield int(class_id), [self.ids[r] for r in rows]


def write_segment_csv(path: str | os.PathLike, ranking: SegmentRanking) -> Path:
    """Write the Kaggle 2019 `Class,Segments` CSV (atomically)."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8", newline="") as handle:
        handle.write(SEGMENT_CSV_HEADER + "\n")
        for class_id, ids in ranking.ranked():
            handle.write(f"{class_id},{' '.join(ids)}\n")
    return Path(path)


def read_segment_csv(path: str | os.PathLike) -> dict[int, list[str]]:
    """Parse a `Class,Segments` CSV into {class id: [segment ids best first]}."""
    ranking: dict[int, list[str]] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            header = handle.readline().strip()
            if header != SEGMENT_CSV_HEADER:
                raise Yt8mError(f"{path}: expected the header {SEGMENT_CSV_HEADER!r}, got {header!r}")
            for number, line in enumerate(handle, start=2):
                line = line.strip()
                if not line:
                    continue
                class_text, sep, segments = line.partition(",")
                try:
                    class_id = int(class_text)
                except ValueError:
                    raise Yt8mError(f"{path}: line {number} does not start with a class id") from None
                ids = segments.split()
                if any(SEGMENT_ID_SEPARATOR not in s for s in ids):
                    raise Yt8mError(f"{path}: line {number} has a segment id that is not 'video:start'")
                ranking[class_id] = ids
    except OSError as error:
        raise Yt8mError(f"{path}: cannot read ({error.strerror or error})") from None
    return ranking


def save_segment_scores(path: str | os.PathLike, batches: Sequence[SegmentBatch], num_classes: int) -> Path:
    """Save segment scores as `.npz` (atomically): video_ids (segment ids), predictions, labels, weights."""
    target = Path(path)
    if target.suffix != ".npz":
        target = target.with_name(target.name + ".npz")

    def stack(name: str, dtype) -> np.ndarray:
        parts = [getattr(b, name) for b in batches]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros((0, num_classes), dtype)

    with atomic_path(target) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(
            handle,
            video_ids=np.asarray([i for b in batches for i in b.segment_ids], dtype=str),
            predictions=stack("predictions", np.float32),
            labels=stack("labels", bool),
            weights=stack("weights", bool),
        )
    return target


def rated_segments(pattern: str) -> dict[tuple[str, int], bool]:
    """{(segment id, class): present} for every rated pair of labelled segment records."""
    rated: dict[tuple[str, int], bool] = {}
    for path in list_record_files(pattern):
        for index, data in enumerate(iterate_raw_records(path)):
            video_id, starts, labels, scores = segment_context(data, f"{path}: record {index}")
            for start, label, score in zip(starts, labels, scores):
                key = (segment_id(video_id, start), int(label))
                rated[key] = rated.get(key, False) or bool(score > 0)
    return rated


def segment_map_of_csv(
    csv_path: str | os.PathLike,
    eval_pattern: str,
    *,
    class_ids: Iterable[int] | None = None,
    top_k: int = SEGMENT_TOP_K,
) -> dict[str, Any]:
    """Segment MAP@top_k of a submission CSV against labelled segment records.

    The same definition as `metrics.segment_map`: per class keep the first top_k listed segments,
    keep the rated ones, AP over the rated positives (denominator: all rated positives of the
    class, listed or not); mean over the (whitelisted) classes with a rated positive.
    """
    ranking = read_segment_csv(csv_path)
    rated = rated_segments(eval_pattern)
    if not rated:
        raise Yt8mError(f"{eval_pattern}: no rated segments to evaluate against")
    allowed = None if class_ids is None else set(int(c) for c in class_ids)
    counted = {label for (_, label), present in rated.items() if present and (allowed is None or label in allowed)}
    value = segment_map_of_ranking(ranking, rated, class_ids=allowed, top_k=top_k)  # tta.py
    return {"segment_map": value, "num_classes": len(counted), "csv": str(csv_path)}
