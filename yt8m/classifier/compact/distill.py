"""Distillation: a student learns from its labels and from one or more teachers' scores.

The loss is the 2018 first place's `MixedCrossEntropyLoss` (train_distill.py, `--loss_lambda 0.5`):
per example sum over classes of

    lambda * CE(teacher probabilities, p) + (1 - lambda) * CE(labels, p),
    CE(t, p) = -[t log(p + eps) + (1 - t) log(1 - p + eps)],  eps = 1e-5,

averaged over the batch (as the starter's loss). The teacher's scores reach the train step in one
of two ways, both better than the seed's ~1.4 TB of full score vectors (3862 float32 per video):

- stored: `write_distill_data` copies each record and adds the teacher's top-k classes
  (`teacher_top_classes`, int64) and probabilities (`teacher_top_scores`, float16 bytes) to its
  context: about 4 bytes per kept class instead of 15 KB per video. Classes outside the top k
  count as probability 0. Training reads them with `DistilledRecordSource`.
- computed: `TeacherSource` runs the teacher bundles (an ensemble with weights, like `merge`)
  on each batch inside the input pipeline: nothing stored, the teacher's cost paid every epoch.

`Distillation` holds the choice and the lambda; `training.train(distill=...)` asks it for the
record source and uses `distillation_loss` when a batch carries `teacher` scores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.bundle import USE_VIDEOS, ModelBundle
from yt8m.classifier.compact.merge import (
    Member,
    _merged_model_class,
    check_inputs_agree,
    normalised_weights,
)
from yt8m.classifier.config import ModelConfig
from yt8m.classifier.readers import (
    FRAMES,
    NUM_FRAMES,
    VIDEO_ID,
    RecordSource,
    read_records,
    finish_frames,
    parse_frame_bytes,
    parse_video_record,
)
from yt8m.core import DISTILL_LAMBDA, Yt8mError
from yt8m.data.files import atomic_path
from yt8m.data.records import ID_KEY, LEGACY_ID_KEY, iterate_raw_records, list_record_files

DISTILL_EPSILON = 1e-5  # the seed's MixedCrossEntropyLoss epsilon (10e-6), the starter's too
DEFAULT_LAMBDA = DISTILL_LAMBDA
DEFAULT_TOP_K = 100  # teacher classes kept per video in a distillation set
TEACHER = "teacher"  # the batch entry holding the teacher's probabilities float32 [B, C]
CLASSES_KEY = "teacher_top_classes"  # context: int64 [k], best first
SCORES_KEY = "teacher_top_scores"  # context: bytes, float16 little-endian [k]
SCORES_DTYPE = np.dtype("<f2")
DISTILL_FROM_RECORDS = "records"  # `distill_from`: the teacher scores stored in the training records
PREDICT_BATCH = 128


# ----------------------------------------------------------------------------- the loss


def distillation_loss(labels, predictions, teacher, lambda_: float, label_weights=None):
    """Per-example lambda x CE(teacher) + (1 - lambda) x CE(labels), summed over classes (float32 [B])."""
    tf = import_tensorflow_quietly()
    predictions = tf.cast(predictions, tf.float32)
    log_p = tf.math.log(predictions + DISTILL_EPSILON)
    log_not_p = tf.math.log(1.0 - predictions + DISTILL_EPSILON)

    def cross_entropy(targets):
        targets = tf.cast(targets, tf.float32)
        return -(targets * log_p + (1.0 - targets) * log_not_p)

    loss = lambda_ * cross_entropy(teacher) + (1.0 - lambda_) * cross_entropy(labels)
    if label_weights is not None:
        loss = loss * tf.cast(label_weights, tf.float32)
    return tf.reduce_sum(loss, axis=1)


def check_lambda(lambda_: float) -> float:
    lambda_ = float(lambda_)
    if not 0.0 <= lambda_ <= 1.0:
        raise Yt8mError(f"`distill_lambda` must be in [0, 1], got {lambda_}")
    return lambda_


# ----------------------------------------------------------------------------- teachers


def load_teacher(teachers: Sequence[str | os.PathLike], weights: Sequence[float] | None = None):
    """One callable `(frames, num_frames) -> probabilities` of 1+ teacher bundles (a weighted mean) and a config
    describing its input (`max_frames`: the teachers' largest).

    The teachers' inputs must agree as for `merge`; each sees its own first `max_frames` frames.
    """
    if not teachers:
        raise Yt8mError("`teachers`: give at least one teacher bundle")
    bundles = [ModelBundle.open(path, use=USE_VIDEOS) for path in teachers]
    members = [Member(b, w) for b, w in zip(bundles, normalised_weights(weights, len(bundles)))]
    check_inputs_agree(members)
    loaded = [b.load() for b in bundles]
    model = _merged_model_class()(
        [item.model for item in loaded],
        [m.weight for m in members],
        [b.config.feature_spec.max_frames for b in bundles],
        bundles[0].config.video_level,
    )
    longest = max(b.config.feature_spec.max_frames for b in bundles)
    config = replace(bundles[0].config, feature_spec=replace(bundles[0].config.feature_spec, max_frames=longest))
    return model, config


def _check_student(config: ModelConfig, teacher_config: ModelConfig, where: str) -> None:
    """A teacher must score the student's inputs: same features (names, sizes), classes, video/frame level."""
    mine, theirs = config.feature_spec.to_dict(), teacher_config.feature_spec.to_dict()
    mine.pop("max_frames", None)
    theirs.pop("max_frames", None)
    normalised = config.training.l2_normalize_video_inputs, teacher_config.training.l2_normalize_video_inputs
    if config.video_level and normalised[0] != normalised[1]:
        raise Yt8mError(f"{where}: the teacher's l2_normalize_video_inputs differs from the student's ({config.model})")
    if mine != theirs or config.num_classes != teacher_config.num_classes or config.video_level != teacher_config.video_level:
        raise Yt8mError(f"{where}: the teacher's inputs or classes differ from the student's ({config.model})")


# ----------------------------------------------------------------------------- sources


class TeacherSource(RecordSource):
    """A `RecordSource` whose batches also carry the teacher's probabilities, computed in the pipeline.

    Records are read with `teacher_frames` frames when the teacher takes more than the student
    (each teacher member sees its own first frames, as in `merge`); the student gets its first
    `spec.max_frames` of them, as its own reader would give them.
    """

    def __init__(
        self,
        pattern,
        spec,
        num_classes: int,
        video_level: bool,
        teacher: Callable,
        teacher_frames: int = 0,
        normalize_video: bool = True,
    ) -> None:
        read_spec = replace(spec, max_frames=max(spec.max_frames, int(teacher_frames)))
        super().__init__(pattern, read_spec, num_classes, video_level=video_level, normalize_video=normalize_video)
        self.teacher = teacher
        self.student_frames = spec.max_frames

    def dataset(self, batch_size: int, **options):
        tf = import_tensorflow_quietly()
        teacher, frames = self.teacher, self.student_frames
        cut = not self.video_level and self.spec.max_frames > frames

        def add_teacher(batch):
            scores = tf.cast(teacher((batch[FRAMES], batch[NUM_FRAMES]), training=False), tf.float32)
            if cut:
                batch = {**batch, FRAMES: batch[FRAMES][:, :frames], NUM_FRAMES: tf.minimum(batch[NUM_FRAMES], frames)}
            return {**batch, TEACHER: scores}

        return super().dataset(batch_size, **options).map(add_teacher).prefetch(tf.data.AUTOTUNE)


class DistilledRecordSource(RecordSource):
    """A `RecordSource` over a distillation set: batches also carry the stored teacher top-k as dense [C]."""

    def _parse(self, data, include_ids: bool) -> dict:
        tf = import_tensorflow_quietly()
        if self.video_level:
            element = parse_video_record(data, self.spec, self.num_classes, self.normalize_video)
        else:
            element = parse_frame_bytes(data, self.spec, self.num_classes)
        context, _ = tf.io.parse_single_sequence_example(
            data,
            context_features={
                CLASSES_KEY: tf.io.VarLenFeature(tf.int64),
                SCORES_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
            },
        )
        classes = context[CLASSES_KEY].values
        scores = tf.cast(tf.io.decode_raw(context[SCORES_KEY], tf.float16, little_endian=True), tf.float32)
        message = f"a record lacks the teacher scores ({CLASSES_KEY}, {SCORES_KEY})"
        checks = [
            tf.debugging.assert_equal(tf.size(classes), tf.size(scores), message=message),
            tf.debugging.assert_positive(tf.size(classes), message=message),
        ]
        with tf.control_dependencies(checks):
            dense = tf.scatter_nd(classes[:, None], scores, [self.num_classes])
        element[TEACHER] = dense
        return element if include_ids else {k: v for k, v in element.items() if k != VIDEO_ID}

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
        """As `RecordSource.dataset`, each record's teacher scores added (`teacher`)."""
        tf = import_tensorflow_quietly()
        autotune = tf.data.AUTOTUNE
        order_fixed = (not shuffle) if deterministic is None else bool(deterministic)
        records = read_records(
            self.files, shuffle=shuffle, seed=seed, record_buffer=shuffle_buffer if shuffle else None,
            repeat=repeat, deterministic=order_fixed,
        )
        parsed = records.map(lambda data: self._parse(data, include_ids), num_parallel_calls=autotune, deterministic=order_fixed)
        batches = parsed.batch(batch_size, drop_remainder=drop_remainder)
        if not self.video_level:
            batches = batches.map(lambda b: finish_frames(b, self.spec), num_parallel_calls=autotune, deterministic=order_fixed)
        return batches.prefetch(autotune)

    def find_problem(self) -> Yt8mError | None:
        """As `RecordSource.find_problem`, and a record without the teacher's scores is named."""
        problem = super().find_problem()
        if problem is not None:
            return problem
        tf = import_tensorflow_quietly()
        for path in self.files:
            for index, data in enumerate(iterate_raw_records(path)):
                context = tf.train.SequenceExample.FromString(data).context.feature
                classes = len(context[CLASSES_KEY].int64_list.value) if CLASSES_KEY in context else 0
                scores = context[SCORES_KEY].bytes_list.value if SCORES_KEY in context else []
                size = len(scores[0]) // SCORES_DTYPE.itemsize if len(scores) == 1 else -1
                if classes == 0 or size != classes:
                    return Yt8mError(
                        f"{path}: record {index} lacks the teacher scores ({CLASSES_KEY}, {SCORES_KEY}); "
                        "write the training records with `yt8m distill-data`"
                    )
                if max(context[CLASSES_KEY].int64_list.value) >= self.num_classes:
                    return Yt8mError(f"{path}: record {index}: a teacher class is outside 0..{self.num_classes - 1}")
        return None


@dataclass
class Distillation:
    """How a student is distilled: the teacher bundles (scores computed in the pipeline) or the stored
    scores of a distillation set (`stored`), and lambda, the weight of the teacher's term."""

    teachers: list[Path] = field(default_factory=list)
    weights: list[float] | None = None
    lambda_: float = DEFAULT_LAMBDA
    stored: bool = False

    def source(self, train_data, config: ModelConfig) -> RecordSource:
        """The record source of the training run: batches with `teacher` probabilities."""
        if config.segments:
            raise Yt8mError("distillation trains on whole videos; `segment_labels` cannot be combined with it")
        spec, classes, level = config.feature_spec, config.num_classes, config.video_level
        normalize = config.training.l2_normalize_video_inputs
        if self.stored:
            return DistilledRecordSource(train_data, spec, classes, video_level=level, normalize_video=normalize)
        teacher, teacher_config = load_teacher(self.teachers, self.weights)
        _check_student(config, teacher_config, str(self.teachers[0]))
        frames = teacher_config.feature_spec.max_frames
        return TeacherSource(train_data, spec, classes, level, teacher, frames, normalize_video=normalize)


def resolve_distillation(
    distill_from: Sequence[str | os.PathLike] | str | None,
    lambda_: float = DEFAULT_LAMBDA,
    weights: Sequence[float] | None = None,
) -> Distillation | None:
    """A `Distillation` from teacher bundle paths, or `records` (the teacher scores stored in the data)."""
    if distill_from is None:
        return None
    items = [distill_from] if isinstance(distill_from, (str, os.PathLike)) else list(distill_from)
    items = [str(item).strip() for item in items if str(item).strip()]
    if not items:
        return None
    lambda_ = check_lambda(lambda_)
    if items == [DISTILL_FROM_RECORDS]:
        return Distillation(lambda_=lambda_, stored=True)
    if DISTILL_FROM_RECORDS in items:
        raise Yt8mError(f"`distill_from`: '{DISTILL_FROM_RECORDS}' cannot be combined with teacher bundles")
    for item in items:
        if not ModelBundle.is_bundle(item):
            raise Yt8mError(f"{item}: `distill_from` needs model bundles (train dirs) or '{DISTILL_FROM_RECORDS}'")
    if weights is not None and len(weights) != len(items):
        raise Yt8mError(f"`distill_weights` has {len(weights)} values for {len(items)} teachers")
    return Distillation(teachers=[Path(item) for item in items], weights=list(weights) if weights else None, lambda_=lambda_)


# ----------------------------------------------------------------------------- writing a distillation set


@dataclass
class DistillDataResult:
    files: list[Path]
    num_videos: int
    top_k: int
    bytes_added: int  # the teacher fields' bytes in the records (the seed's full vectors: 4 x classes per video)
    full_vector_bytes: int


def add_teacher_scores(data: bytes, scores: np.ndarray, top_k: int, video_id: bytes | None = None) -> tuple[bytes, int]:
    """One serialized record with the teacher's top-k classes and float16 probabilities added to its context
    (and the number of bytes added); `video_id` checks that the scores belong to this record."""
    tf = import_tensorflow_quietly()
    example = tf.train.SequenceExample.FromString(data)
    if video_id is not None:
        feature = example.context.feature  # `in` first: reading a missing key of a proto map would add it
        ids = [feature[key].bytes_list.value for key in (ID_KEY, LEGACY_ID_KEY) if key in feature]
        own = next((values[0] for values in ids if values and values[0]), b"")
        if own != video_id:
            raise Yt8mError(f"record {own!r}: scores of {video_id!r} (the input changed while it was read)")
    order = np.lexsort((np.arange(scores.shape[0]), -scores))[:top_k]
    context = example.context.feature
    context[CLASSES_KEY].int64_list.value[:] = [int(c) for c in order]
    payload = scores[order].astype(SCORES_DTYPE).tobytes()
    context[SCORES_KEY].bytes_list.value[:] = [payload]
    added = context[CLASSES_KEY].ByteSize() + context[SCORES_KEY].ByteSize()
    return example.SerializeToString(), added


def write_distill_data(
    input_pattern: str,
    teachers: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    weights: Sequence[float] | None = None,
    top_k: int = DEFAULT_TOP_K,
    batch_size: int = PREDICT_BATCH,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> DistillDataResult:
    """Copy every record matching `input_pattern` into `out_dir` (one file per input file, same name) with the
    teachers' top-k probabilities added. Each file is written under a temporary name and renamed when complete."""
    tf = import_tensorflow_quietly()
    if top_k < 1:
        raise Yt8mError(f"`top_k` must be >= 1, got {top_k}")
    files = list_record_files(input_pattern)
    out = Path(out_dir)
    targets = [out / Path(path).name for path in files]
    if len(set(targets)) != len(targets):
        raise Yt8mError(f"{input_pattern}: several input files share a name; they would overwrite each other in {out}")
    for path, target in zip(files, targets):
        if Path(path).resolve() == target.resolve():
            raise Yt8mError(f"{target}: the distillation set must not replace its input")
        if target.exists() and not overwrite:
            raise Yt8mError(f"{target}: already exists (pass `overwrite=True` to replace it)")
    teacher, config = load_teacher(teachers, weights)
    top_k = min(top_k, config.num_classes)

    @tf.function(reduce_retracing=True)
    def forward(frames, num_frames):
        return teacher((frames, num_frames), training=False)

    done, added = 0, 0
    for path, target in zip(files, targets):
        source = RecordSource.for_model(path, config)
        raw = iterate_raw_records(path)
        with atomic_path(target) as staging:
            with tf.io.TFRecordWriter(str(staging)) as writer:
                for batch in source.iterate(batch_size):
                    scores = forward(tf.constant(batch[FRAMES]), tf.constant(batch[NUM_FRAMES])).numpy()
                    for video_id, row in zip(batch[VIDEO_ID], scores):
                        data, extra = add_teacher_scores(next(raw), np.asarray(row, np.float32), top_k, video_id)
                        writer.write(data)
                        added += extra
                        done += 1
                    if progress is not None:
                        progress(done)
    return DistillDataResult(
        files=targets,
        num_videos=done,
        top_k=top_k,
        bytes_added=added,
        full_vector_bytes=done * config.num_classes * np.dtype(np.float32).itemsize,
    )
