"""SavedModels not made by yt8m (and yt8m exports): read each signature's declared inputs and feed them.

Two signature layouts come from the YT8M starter code (google/youtube-8m); yt8m reads the
names, dtypes and shapes each signature declares and feeds exactly those:

- "frames" (`export_model_mediapipe.py`, used for the official baseline model and by MediaPipe's
  YT8M inference graph, and `yt8m export`'s `rgb_and_audio` signature): inputs `rgb_and_audio`
  float32 [N, T, 1152] (dequantized rgb then audio, not normalised) and `num_frames` int32
  `[N, 1]` (the exporter squeezes axis 1 inside the graph) or `[N]` (older yt8m exports and
  hand-made models); output `predictions` [N, C]. A fixed T is padded / truncated to.
- "examples" (`export_model.py`, the older batch-prediction exporter): one string input
  (`example_bytes`) of serialized records; outputs `video_id`, `class_indexes` int32 and
  `predictions` float32. The starter parses them with its reader: frame-level models map
  `parse_single_sequence_example` over the batch (outputs [N, 1, K]), video-level models
  `parse_example` on `mean_rgb` / `mean_audio` (outputs [N, K]). yt8m serializes its
  `VideoFeatures` the same way (SequenceExample, or Example with the frame means when the graph
  parses Examples). Its `tf.nn.top_k(predictions, 20)` keeps only the top K=20 classes per
  video: the other classes get score 0 in the full [N, C] vector yt8m returns, so rankings
  past K and every metric that needs them are unknown. C is the size of the model's label map
  (`assets/label_map.txt`), else YT8M's 3862. A signature whose string input returns full
  `predictions` [N, C] and no `class_indexes` (yt8m's `serialized`) is read whole.

Anything else (other input names, a width other than the features', inputs yt8m cannot fill) is
refused with one line naming the model, the signatures' inputs and outputs and what yt8m feeds.
Runtime failures of the graph become one line too, never a TensorFlow dump.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yt8m import trust
from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.bundle import yt8m_class_names
from yt8m.classifier.config import ModelConfig
from yt8m.classifier.export import (
    ASSETS_DIR,
    DEFAULT_SIGNATURE,
    INPUT_FRAMES,
    INPUT_NUM_FRAMES,
    METADATA_FILENAME,
    OUTPUT_PREDICTIONS,
    read_export_metadata,
)
from yt8m.classifier.readers import features_to_model_inputs
from yt8m.core import NUM_CLASSES, FeatureSpec, VideoFeatures, Yt8mError
from yt8m.data import records
from yt8m.data.vocabulary import LABEL_MAP_FILENAME, load_vocabulary

KIND_EXPORT = "yt8m-export"
KIND_STARTER = "starter-savedmodel"
LAYOUT_FRAMES = "frames"
LAYOUT_EXAMPLES = "examples"
OUTPUT_CLASS_INDEXES = "class_indexes"  # starter export_model.py: top-k class ids
STARTER_EXAMPLES_INPUT = "example_bytes"  # starter export_model.py's input name (any single string input is accepted)
FEEDABLE = (
    f"'{INPUT_FRAMES}' float [N, T, {{width}}] + '{INPUT_NUM_FRAMES}' int [N, 1] or [N] -> '{OUTPUT_PREDICTIONS}' [N, C] "
    f"(starter export_model_mediapipe.py), or one string input [N] of serialized examples -> '{OUTPUT_PREDICTIONS}' "
    f"(+ '{OUTPUT_CLASS_INDEXES}', starter export_model.py)"
)
_SEQUENCE_PARSE_MARK = "SequenceExample"  # op types ParseSingleSequenceExample / ParseSequenceExample(V2)
_EXAMPLE_PARSE_MARK = "ParseExample"  # op types ParseExample / ParseExampleV2
_TF_ERROR_FRAMING = ("Graph execution error", "Detected at node", "<stack traces unavailable>")  # lines around the real message
_TF_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\]\s*$")


@dataclass
class LoadedSavedModel:
    """A SavedModel ready to score `VideoFeatures`: what it takes, its classes and its runners.

    `run_frames(frames [N, T, D] dequantized, counts [N]) -> [N, C]` for the frames layout (None
    for the examples layout); `run_videos(videos) -> [N, C]` for both.
    """

    path: Path
    signature: str
    layout: str
    kind: str
    feature_spec: FeatureSpec
    num_classes: int
    class_names: list[str] | None
    custom_labels: bool
    model_name: str
    step: int | None
    feature_weights: str | None
    top_k: int | None  # examples layout: classes scored per video (the rest are 0); None: all
    run_frames: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    run_videos: Callable[[Sequence[VideoFeatures]], np.ndarray]


def _shape(spec: Any) -> tuple[int | None, ...] | None:
    shape = getattr(spec, "shape", None)
    if shape is None or shape.rank is None:
        return None
    return tuple(None if d is None else int(d) for d in shape.as_list())


def describe_tensor(name: str, spec: Any) -> str:
    """`name dtype [d0, d1]` with `?` for unknown dimensions (the line users read)."""
    shape = _shape(spec)
    dims = "unknown rank" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
    dtype = getattr(getattr(spec, "dtype", None), "name", "?")
    return f"{name} {dtype} {dims}"


def signature_io(function: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(declared inputs, declared outputs) of a loaded signature, by name."""
    _, inputs = function.structured_input_signature
    outputs = function.structured_outputs
    return dict(inputs), dict(outputs) if isinstance(outputs, dict) else {}


def describe_signatures(loaded: Any) -> str:
    """`name(inputs -> outputs); ...` for every signature of a loaded SavedModel."""
    parts = []
    for name in _ordered(loaded.signatures):
        inputs, outputs = signature_io(loaded.signatures[name])
        given = ", ".join(describe_tensor(k, v) for k, v in sorted(inputs.items()))
        made = ", ".join(describe_tensor(k, v) for k, v in sorted(outputs.items()))
        parts.append(f"{name}({given} -> {made})")
    return "; ".join(parts) if parts else "no signatures"


def _ordered(signatures: Any) -> list[str]:
    return sorted(signatures, key=lambda n: (n != DEFAULT_SIGNATURE, n))


def _frames_problem(inputs: dict, outputs: dict, width: int) -> str | None:
    """Why a signature is not the frames layout (None: it is)."""
    if set(inputs) != {INPUT_FRAMES, INPUT_NUM_FRAMES} or OUTPUT_PREDICTIONS not in outputs:
        return "names"
    frames, counts = _shape(inputs[INPUT_FRAMES]), _shape(inputs[INPUT_NUM_FRAMES])
    if not inputs[INPUT_FRAMES].dtype.is_floating or frames is None or len(frames) != 3:
        return f"'{INPUT_FRAMES}' is {describe_tensor(INPUT_FRAMES, inputs[INPUT_FRAMES])}, not float [N, T, D]"
    if frames[2] is not None and frames[2] != width:
        return f"its '{INPUT_FRAMES}' takes {frames[2]} values per frame; the features have {width} (rgb 1024 + audio 128)"
    if not inputs[INPUT_NUM_FRAMES].dtype.is_integer or counts is None or not (
        len(counts) == 1 or (len(counts) == 2 and counts[1] in (1, None))
    ):
        return f"'{INPUT_NUM_FRAMES}' is {describe_tensor(INPUT_NUM_FRAMES, inputs[INPUT_NUM_FRAMES])}, not int [N, 1] or [N]"
    return None


def _examples_problem(inputs: dict, outputs: dict) -> str | None:
    """Why a signature is not the examples layout (None: it is)."""
    if len(inputs) != 1 or OUTPUT_PREDICTIONS not in outputs:
        return "names"
    (name, spec), = inputs.items()
    shape = _shape(spec)
    if spec.dtype.name != "string" or shape is None or len(shape) != 1:
        return "names"
    return None


def find_signature(loaded: Any, path: Path, width: int) -> tuple[str, str, Any]:
    """(signature name, layout, function): frames layout first, serving_default first within a layout."""
    problems = []
    names = _ordered(loaded.signatures)
    for layout in (LAYOUT_FRAMES, LAYOUT_EXAMPLES):
        for name in names:
            function = loaded.signatures[name]
            inputs, outputs = signature_io(function)
            problem = _frames_problem(inputs, outputs, width) if layout == LAYOUT_FRAMES else _examples_problem(inputs, outputs)
            if problem is None:
                return name, layout, function
            if problem != "names":
                problems.append(f"signature '{name}': {problem}")
    reason = f"{problems[0]}; " if problems else "no signature yt8m can feed; "
    raise Yt8mError(
        f"{path}: {reason}it has {describe_signatures(loaded)}; yt8m feeds {FEEDABLE.format(width=width)}"
    )


def _graph_op_types(function: Any) -> set[str]:
    """Op types in a signature's graph and in the functions it calls (map_fn / while bodies)."""
    try:
        graph_def = function.graph.as_graph_def()
    except (AttributeError, ValueError):
        return set()
    kinds = {node.op for node in graph_def.node}
    for library_function in graph_def.library.function:
        kinds.update(node.op for node in library_function.node_def)
    return kinds


def parses_video_level_examples(function: Any) -> bool:
    """Whether the examples-layout graph parses video-level `tf.Example`s (else SequenceExamples)."""
    kinds = _graph_op_types(function)
    if any(_SEQUENCE_PARSE_MARK in kind for kind in kinds):
        return False
    return any(kind.startswith(_EXAMPLE_PARSE_MARK) for kind in kinds)


def serialize_videos(videos: Sequence[VideoFeatures], spec: FeatureSpec, video_level: bool) -> list[bytes]:
    """The records the starter's readers parse: frame-level SequenceExamples, or video-level
    Examples whose `mean_rgb` / `mean_audio` are the given means, else the dequantized frames' mean."""
    if not video_level:
        return [records.serialize(video) for video in videos]
    means, _ = features_to_model_inputs(videos, spec, video_level=True, normalize=False)
    out = []
    for video, mean in zip(videos, means):
        rgb_size = spec.sizes[0]
        copy = VideoFeatures(
            video.video_id, video.rgb, video.audio, list(video.labels), mean_rgb=mean[:rgb_size], mean_audio=mean[rgb_size:]
        )
        out.append(records.to_video_level_example(copy).SerializeToString())
    return out


def _first_line(error: BaseException) -> str:
    """The line of a TensorFlow error that says what went wrong (not its framing or stack lines)."""
    text = str(getattr(error, "message", "") or error).strip()
    for line in text.splitlines():
        if not line.strip() or line[0].isspace() or line.startswith(_TF_ERROR_FRAMING):
            continue
        return _TF_OP_SUFFIX.sub("", line).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _call(function: Any, feeds: dict, path: Path, signature: str) -> dict:
    tf = import_tensorflow_quietly()
    try:
        return function(**feeds)
    except (tf.errors.OpError, ValueError, TypeError) as error:
        raise Yt8mError(f"{path}: signature '{signature}' failed on the inputs it declares ({_first_line(error)})") from None


def _label_map(path: Path) -> Path | None:
    for candidate in (path / ASSETS_DIR / LABEL_MAP_FILENAME, path / LABEL_MAP_FILENAME):
        if candidate.is_file():
            return candidate
    return None


def names_from(path: Path | None, num_classes: int) -> list[str] | None:
    """Class names of a vocabulary.csv or label map, which must name exactly `num_classes` classes."""
    if path is None or not Path(path).is_file():
        return None
    names = list(load_vocabulary(path).names)
    if len(names) != num_classes:
        raise Yt8mError(f"{path}: has {len(names)} class names, but the model has {num_classes} classes")
    return names


def load_saved_model(path: str | Path, trust_model: bool = False) -> LoadedSavedModel:
    """Load a SavedModel directory and pick the signature yt8m can feed (see the module doc).

    A SavedModel is a program: one whose graph reaches files, the network or Python is refused
    (one line, before TensorFlow loads it) unless `trust_model`, or unless it is in the trust
    registry (`yt8m export` and `yt8m models fetch` put their models there).
    """
    path = Path(path)
    trust.check_saved_model(path, trust_model=trust_model)
    tf = import_tensorflow_quietly()
    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise Yt8mError(f"{path}: cannot load the SavedModel ({_first_line(error)})") from None
    metadata_path = path / ASSETS_DIR / METADATA_FILENAME
    step = feature_weights = None
    num_classes = None
    spec = FeatureSpec()
    model_name, kind = "SavedModel", KIND_STARTER
    if metadata_path.is_file():
        metadata = read_export_metadata(path)
        config = ModelConfig.from_dict(metadata["config"], source=str(metadata_path))
        spec, num_classes, step, model_name, kind = config.feature_spec, config.num_classes, metadata.get("step"), config.model, KIND_EXPORT
        feature_weights = config.feature_weights
    signature, layout, function = find_signature(loaded, path, spec.total_size)
    inputs, outputs = signature_io(function)
    label_map = _label_map(path)
    top_k = None
    if layout == LAYOUT_FRAMES:
        run_frames = _frames_runner(function, inputs, path, signature)
        if num_classes is None:
            num_classes = _declared_classes(outputs[OUTPUT_PREDICTIONS])
        if num_classes is None:
            probe = run_frames(np.zeros((1, spec.max_frames, spec.total_size), np.float32), np.ones([1], np.int32))
            num_classes = int(probe.shape[-1])

        def run_videos(videos: Sequence[VideoFeatures]) -> np.ndarray:
            frames, counts = features_to_model_inputs(videos, spec, normalize=False)
            return run_frames(frames, counts)

        description = f"{model_name} ({signature})"
    else:
        run_frames = None
        ranked = OUTPUT_CLASS_INDEXES in outputs
        if num_classes is None:
            num_classes = None if ranked else _declared_classes(outputs[OUTPUT_PREDICTIONS])
            if num_classes is None:
                num_classes = len(load_vocabulary(label_map).names) if label_map else NUM_CLASSES
        if ranked:
            top_k = _declared_classes(outputs[OUTPUT_CLASS_INDEXES])
        video_level = parses_video_level_examples(function)
        run_videos = _examples_runner(function, inputs, path, signature, spec, int(num_classes), video_level, ranked)
        scope = f"top {top_k} classes per video only" if ranked and top_k else ("top-k classes only" if ranked else "all classes")
        description = f"{model_name} ({signature}: serialized {'Examples' if video_level else 'SequenceExamples'}, {scope})"
    names = names_from(label_map, int(num_classes)) if label_map else yt8m_class_names(int(num_classes))
    return LoadedSavedModel(
        path=path,
        signature=signature,
        layout=layout,
        kind=kind,
        feature_spec=spec,
        num_classes=int(num_classes),
        class_names=names,
        custom_labels=label_map is not None and int(num_classes) != NUM_CLASSES,
        model_name=description,
        step=step,
        feature_weights=feature_weights,
        top_k=top_k,
        run_frames=run_frames,
        run_videos=run_videos,
    )


def _declared_classes(spec: Any) -> int | None:
    shape = _shape(spec)
    return None if not shape or shape[-1] is None else int(shape[-1])


def _frames_runner(function: Any, inputs: dict, path: Path, signature: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """frames [N, T, D], counts [N] -> scores, shaped and typed as the signature declares."""
    tf = import_tensorflow_quietly()
    frames_spec, counts_spec = inputs[INPUT_FRAMES], inputs[INPUT_NUM_FRAMES]
    fixed_length = _shape(frames_spec)[1]
    counts_rank = len(_shape(counts_spec))

    def run(frames: np.ndarray, counts: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        counts = np.asarray(counts).reshape(-1)
        if fixed_length is not None and frames.shape[1] != fixed_length:
            fitted = np.zeros((frames.shape[0], fixed_length, frames.shape[2]), frames.dtype)
            keep = min(fixed_length, frames.shape[1])
            fitted[:, :keep] = frames[:, :keep]
            frames, counts = fitted, np.minimum(counts, fixed_length)
        feeds = {
            INPUT_FRAMES: tf.constant(frames, dtype=frames_spec.dtype),
            INPUT_NUM_FRAMES: tf.constant(counts[:, None] if counts_rank == 2 else counts, dtype=counts_spec.dtype),
        }
        outputs = _call(function, feeds, path, signature)
        return np.asarray(outputs[OUTPUT_PREDICTIONS])

    return run


def _examples_runner(
    function: Any,
    inputs: dict,
    path: Path,
    signature: str,
    spec: FeatureSpec,
    num_classes: int,
    video_level: bool,
    ranked: bool,
) -> Callable[[Sequence[VideoFeatures]], np.ndarray]:
    """videos -> [N, C] scores; with `class_indexes` the top-k scores are put at their classes, the rest 0."""
    tf = import_tensorflow_quietly()
    (input_name,) = inputs

    def run(videos: Sequence[VideoFeatures]) -> np.ndarray:
        data = serialize_videos(videos, spec, video_level)
        outputs = _call(function, {input_name: tf.constant(data, dtype=tf.string)}, path, signature)
        count = len(data)
        predictions = np.asarray(outputs[OUTPUT_PREDICTIONS], dtype=np.float32).reshape(count, -1)
        if not ranked:
            return predictions
        indexes = np.asarray(outputs[OUTPUT_CLASS_INDEXES]).astype(np.int64).reshape(count, -1)
        if indexes.shape != predictions.shape:
            raise Yt8mError(
                f"{path}: '{OUTPUT_CLASS_INDEXES}' {indexes.shape} and '{OUTPUT_PREDICTIONS}' {predictions.shape} differ in shape"
            )
        if indexes.size and (indexes.min() < 0 or indexes.max() >= num_classes):
            raise Yt8mError(
                f"{path}: the model returned class {int(indexes.max())}, outside its {num_classes} classes "
                f"(give its label map as {ASSETS_DIR}/{LABEL_MAP_FILENAME})"
            )
        scores = np.zeros((count, num_classes), dtype=np.float32)
        np.put_along_axis(scores, indexes, predictions, axis=1)
        return scores

    return run


def with_vocabulary(predictor: Any, path: str | Path) -> Any:
    """A copy of a `Predictor` (any kind of model) naming its classes from a vocabulary.csv or a label
    map, which must name exactly its classes (`classify --vocabulary`)."""
    path = Path(path)
    if not path.is_file():
        raise Yt8mError(f"{path}: no such vocabulary or label map")
    names = names_from(path, int(predictor.num_classes))
    return dataclasses.replace(predictor, class_names=names, custom_labels=int(predictor.num_classes) != NUM_CLASSES)
