"""`yt8m train`, `yt8m eval`, `yt8m predict`, `yt8m export`: the classifier commands.

Each parses its options, calls `yt8m.classifier.training` / `evaluation` / `export` and prints.
TensorFlow is imported inside the commands only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from yt8m.app.console import console, error_console
from yt8m.core import Yt8mError

EVAL_KEYS = ("hit_at_one", "perr", "gap", "map", "loss", "num_examples")
EVAL_LABELS = {
    "hit_at_one": "Hit@1",
    "perr": "PERR",
    "gap": "GAP",
    "map": "mAP",
    "loss": "loss",
    "num_examples": "videos",
}

# Options shared by `eval` and `predict` for the segment task.
SEGMENT_CLASSES_OPTION = typer.Option(
    None, "--segment-classes",
    help="Rated-class whitelist (default: the cached official segment_label_ids.csv; custom datasets: all classes).",
)
TTA_SHIFTS_OPTION = typer.Option(
    None, "--tta-shifts", help="Average segment predictions over these frame shifts, e.g. -2,-1,0,1."
)


def _feature_spec(names: Optional[str], sizes: Optional[str], max_frames: Optional[int]):
    """The FeatureSpec the options ask for, or None when none of them was given (keep the saved one)."""
    from yt8m.core import MAX_FRAMES, FeatureSpec

    if names is None and sizes is None and max_frames is None:
        return None
    default = FeatureSpec()
    return FeatureSpec.parse(
        names if names is not None else ",".join(default.names),
        sizes if sizes is not None else ",".join(map(str, default.sizes)),
        max_frames=max_frames if max_frames is not None else MAX_FRAMES,
    )


class _ProgressPrinter:
    """Training progress: a live line on a terminal (rich), one plain line per report otherwise."""

    def __init__(self, max_steps: Optional[int]) -> None:
        self.live = error_console.is_terminal
        self.max_steps = max_steps
        self._progress = None
        self._task = None

    def __enter__(self) -> "_ProgressPrinter":
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            columns = [TextColumn("[bold]train[/]"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
            self._progress = Progress(*columns, console=error_console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task("starting", total=self.max_steps)
        return self

    def __call__(self, report) -> None:
        text = (
            f"step {report.step}  epoch {report.epoch + 1}  {report.examples_per_second:,.0f} ex/s  "
            f"loss {report.loss:.4f}  hit@1 {report.hit_at_one:.3f}  gap {report.gap:.3f}  "
            f"lr {report.learning_rate:.3g}"
        )
        if self._progress is not None:
            self._progress.update(self._task, completed=report.step, description=text)
        else:
            error_console.print(text, markup=False, highlight=False, soft_wrap=True)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


def train(
    train_data: str = typer.Option(..., "--train-data", help="TFRecord files: a path, directory, glob or comma list."),
    train_dir: Path = typer.Option(..., "--train-dir", help="Where config.json, checkpoints and logs go."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Registered model name (see `yt8m models list`); optional when resuming."
    ),
    set_values: Optional[list[str]] = typer.Option(
        None, "--set", help="key=value: a model hyperparameter or training setting (repeatable)."
    ),
    feature_names: Optional[str] = typer.Option(None, "--feature-names", help="Features to use (default: rgb,audio)."),
    feature_sizes: Optional[str] = typer.Option(None, "--feature-sizes", help="Their sizes (default: 1024,128)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Frames per video (default: 300)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", min=1, help="Classes (default: 3862)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Global batch (default: the model's published one)."),
    base_learning_rate: Optional[float] = typer.Option(None, "--base-learning-rate", help="Adam's initial learning rate."),
    learning_rate_decay: Optional[float] = typer.Option(None, "--learning-rate-decay", help="Staircase decay factor."),
    learning_rate_decay_examples: Optional[int] = typer.Option(
        None, "--learning-rate-decay-examples", min=1, help="Decay once every this many examples (default: the model's published one, mostly 4000000)."
    ),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop at this global step."),
    num_epochs: Optional[int] = typer.Option(None, "--num-epochs", min=1, help="Stop after this many epochs in all."),
    ema_decay: Optional[float] = typer.Option(
        None, "--ema-decay", help="Keep an exponential moving average of the weights (e.g. 0.9997); used by eval/export."
    ),
    label_weights: Optional[Path] = typer.Option(
        None, "--label-weights", help="Per-class loss weights: .npy or text with one number per class."
    ),
    start_new_model: bool = typer.Option(
        False, "--start-new-model", help="Discard the train dir's config, checkpoints and logs and start over."
    ),
    devices: Optional[str] = typer.Option(
        None, "--devices", help="Comma list of devices for MirroredStrategy (default: every GPU when several)."
    ),
    export: bool = typer.Option(False, "--export", help="Export a SavedModel to TRAIN_DIR/export at the end."),
    init_from: Optional[Path] = typer.Option(
        None,
        "--init-from",
        help="Fine-tune: start from another train dir's weights (same model and features); with another "
        "label space (--num-classes, --label-map) the classifier head is re-initialised.",
    ),
    freeze_pooling_steps: int = typer.Option(
        0, "--freeze-pooling-steps", min=0, help="Train only the classifier head for the first N steps."
    ),
    label_map: Optional[Path] = typer.Option(
        None,
        "--label-map",
        help="Class names, one per line, copied into the train dir (default: OUT.label_map.txt next to the records).",
    ),
    segment_labels: bool = typer.Option(
        False,
        "--segment-labels",
        help="Train on the 2019 segment labels (one example per rated 5-frame segment; only rated "
        "(segment, class) pairs count), usually with --init-from a video-level train dir.",
    ),
    segment_context: bool = typer.Option(
        False,
        "--segment-context",
        help="With --segment-labels: the model also sees the whole video (segment and video "
        "predictions mixed per class).",
    ),
) -> None:
    """Train a YT8M classifier on TFRecords, resuming from the train dir's latest checkpoint."""
    from yt8m.classifier.config import load_label_weights
    from yt8m.classifier.training import resolve_train_config
    from yt8m.classifier.training import train as run_training

    training = {
        "batch_size": batch_size,
        "base_learning_rate": base_learning_rate,
        "learning_rate_decay": learning_rate_decay,
        "learning_rate_decay_examples": learning_rate_decay_examples,
        "max_steps": max_steps,
        "num_epochs": num_epochs,
        "ema_decay": ema_decay,
    }
    if label_weights is not None:
        training["label_weights"] = load_label_weights(label_weights)
    config = resolve_train_config(
        train_dir,
        model,
        set_values=set_values or [],
        training=training,
        feature_spec=_feature_spec(feature_names, feature_sizes, max_frames),
        num_classes=num_classes,
        start_new_model=start_new_model,
        init_from=init_from,
    )
    config = _with_segment_mode(config, train_dir, segment_labels, segment_context, start_new_model)
    if config.segments:
        from yt8m.classifier.segments import check_segment_labels

        check_segment_labels(train_data)
    device_list = [d.strip() for d in devices.split(",") if d.strip()] if devices else None
    started = time.monotonic()
    with _ProgressPrinter(config.training.max_steps) as printer:
        result = run_training(
            train_data,
            train_dir,
            config,
            start_new_model=start_new_model,
            progress=printer,
            devices=device_list,
            export=export,
            init_from=init_from,
            freeze_pooling_steps=freeze_pooling_steps,
            label_map=label_map,
        )
    elapsed = time.monotonic() - started
    if result.init is not None:
        kept = f"kept {result.init.copied} weights"
        head = "; classifier head re-initialised for the new classes" if result.init.head_reset else ""
        console.print(
            f"initialised from {result.init.source} (step {result.init.source_step}): {kept}{head}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    resumed = f" (resumed at step {result.start_step})" if result.start_step else ""
    console.print(
        f"trained {config.model} to step {result.step}{resumed} in {elapsed:.0f}s; checkpoint {result.checkpoint}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if result.export_dir is not None:
        console.print(f"exported SavedModel to {result.export_dir}", markup=False, highlight=False, soft_wrap=True)


def _with_segment_mode(config, train_dir: Path, segment_labels: bool, segment_context: bool, start_new_model: bool):
    """The config with the segment mode the options ask for; a resumed train dir must keep its own."""
    from dataclasses import replace

    from yt8m.classifier.training import config_path

    if segment_context and not segment_labels:
        raise Yt8mError("--segment-context needs --segment-labels")
    wanted = ("context" if segment_context else "segment") if segment_labels else None
    resuming = config_path(train_dir).exists() and not start_new_model
    if resuming and config.segments is not None and wanted is None:
        return config  # resuming a segment train dir without repeating the flag
    if resuming and config.segments != wanted:
        have = f"segment labels ({config.segments})" if config.segments else "video labels"
        raise Yt8mError(
            f"{config_path(train_dir)}: this train dir was trained on {have}; "
            "pass --start-new-model to replace it, or use another --train-dir"
        )
    return replace(config, segments=wanted)


def _segment_classes(path: Optional[Path], train_dir: Optional[Path]):
    from yt8m.classifier.config import ModelConfig
    from yt8m.classifier.segments import resolve_segment_classes
    from yt8m.core import NUM_CLASSES

    num_classes = ModelConfig.load(train_dir).num_classes if train_dir is not None else NUM_CLASSES
    return resolve_segment_classes(path, num_classes)


def evaluate(
    eval_data: str = typer.Option(..., "--eval-data", help="Labelled TFRecord files: a path, directory, glob or comma list."),
    train_dir: Optional[Path] = typer.Option(
        None, "--train-dir", help="A yt8m train dir (config.json + checkpoints); required unless --predictions."
    ),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Videos per batch."),
    top_k: int = typer.Option(20, "--top-k", min=1, help="Predictions per video kept for GAP and mAP."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    segment_labels: bool = typer.Option(
        False, "--segment-labels", help="Segment MAP@100000 over the rated segments (2019 task) instead."
    ),
    segment_classes: Optional[Path] = SEGMENT_CLASSES_OPTION,
    tta_shifts: Optional[str] = TTA_SHIFTS_OPTION,
    segment_top_k: int = typer.Option(100_000, "--segment-top-k", min=1, help="Segments per class that count (MAP@K)."),
    predictions: Optional[Path] = typer.Option(
        None, "--predictions", help="With --segment-labels: score this Class,Segments CSV instead of a model."
    ),
) -> None:
    """Evaluate a trained model: Hit@1, PERR, GAP@20, mAP and loss (streaming over the records)."""
    from yt8m.classifier.evaluation import evaluate as run_evaluation

    if segment_labels:
        _evaluate_segments(eval_data, train_dir, batch_size, as_json, segment_classes, tta_shifts, segment_top_k, predictions)
        return
    if predictions is not None:
        raise Yt8mError("--predictions needs --segment-labels (it scores a Class,Segments CSV)")
    if train_dir is None:
        raise Yt8mError("--train-dir is required (the model to evaluate)")
    _refuse_context_model(train_dir)
    results = run_evaluation(eval_data, train_dir, batch_size, top_k=top_k)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{train_dir} at step {results['step']}", title_justify="left")
    for key in EVAL_KEYS:
        table.add_column(EVAL_LABELS[key], justify="right")
    table.add_row(*(_format_metric(results.get(key)) for key in EVAL_KEYS))
    console.print(table)


def _evaluate_segments(eval_data, train_dir, batch_size, as_json, classes_path, tta_shifts, top_k, predictions) -> None:
    from yt8m.classifier.segments import evaluate_segments, parse_shifts, segment_map_of_csv

    if predictions is not None:
        class_ids = _segment_classes(classes_path, train_dir)
        results = segment_map_of_csv(predictions, eval_data, class_ids=class_ids, top_k=top_k)
        title = str(predictions)
    else:
        if train_dir is None:
            raise Yt8mError("--train-dir is required (the model to evaluate), or --predictions CSV")
        class_ids = _segment_classes(classes_path, train_dir)
        results = evaluate_segments(
            eval_data, train_dir, batch_size, class_ids=class_ids, shifts=parse_shifts(tta_shifts), top_k=top_k
        )
        title = f"{train_dir} at step {results['step']}"
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    extra = f"  ({results['num_segments']} segments)" if "num_segments" in results else ""
    console.print(f"{title}: segment MAP@{top_k} {results['segment_map']:.4f}{extra}", markup=False, highlight=False, soft_wrap=True)


def _refuse_context_model(train_dir: Path) -> None:
    """A segment model with video context reads segments only: it needs --segment-labels."""
    from yt8m.classifier.config import ModelConfig

    if ModelConfig.load(train_dir).segments == "context":
        raise Yt8mError(
            f"{train_dir}: this model was trained on segments with video context; it only takes segments (--segment-labels)"
        )


def _format_metric(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


def predict(
    input_data: str = typer.Option(..., "--input-data", help="TFRecord files: a path, directory, glob or comma list."),
    train_dir: Path = typer.Option(..., "--train-dir", help="A yt8m train dir (config.json + checkpoints)."),
    output: Path = typer.Option(..., "-o", "--output", help="Predictions CSV (VideoId,LabelConfidencePairs)."),
    top_k: int = typer.Option(20, "--top-k", min=1, help="Label/score pairs per video."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Videos per batch."),
    scores: Optional[Path] = typer.Option(
        None, "--scores", "--save-scores", help="Also save every score (ids, predictions, labels) to this .npz (for `yt8m ensemble`)."
    ),
    segment_labels: bool = typer.Option(
        False, "--segment-labels", help="Write the 2019 Class,Segments CSV (segment ids vid:start) instead."
    ),
    segment_classes: Optional[Path] = SEGMENT_CLASSES_OPTION,
    segment_max_pred: int = typer.Option(100_000, "--segment-max-pred", min=1, help="Segments listed per class."),
    tta_shifts: Optional[str] = TTA_SHIFTS_OPTION,
) -> None:
    """Write the Kaggle predictions CSV (top 20 label/score pairs per video) for TFRecords."""
    from yt8m.classifier.evaluation import predict as run_prediction

    if segment_labels:
        from yt8m.classifier.segments import parse_shifts, predict_segments

        segment_result = predict_segments(
            input_data,
            train_dir,
            output,
            class_ids=_segment_classes(segment_classes, train_dir),
            max_pred=segment_max_pred,
            shifts=parse_shifts(tta_shifts),
            batch_size=batch_size,
            scores_path=scores,
        )
        message = f"wrote segment predictions for {segment_result.num_segments} segments to {segment_result.csv_path}"
        if segment_result.scores_path is not None:
            message += f" (scores in {segment_result.scores_path})"
        console.print(message, markup=False, highlight=False, soft_wrap=True)
        return
    _refuse_context_model(train_dir)
    result = run_prediction(input_data, train_dir, output, top_k=top_k, batch_size=batch_size, scores_path=scores)
    message = f"wrote predictions for {result.num_videos} videos to {result.csv_path}"
    if result.scores_path is not None:
        message += f" (scores in {result.scores_path})"
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def export(
    train_dir: Path = typer.Option(..., "--train-dir", help="A yt8m train dir (config.json + checkpoints)."),
    output: Path = typer.Option(..., "-o", "--output", help="SavedModel directory to create."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export at OUTPUT."),
    vocabulary: Optional[Path] = typer.Option(
        None, "--vocabulary", help="Class names to ship (vocabulary.csv or label map; default: the cached YT8M one)."
    ),
) -> None:
    """Export a trained model as a SavedModel with `serialized` and `rgb_and_audio` signatures."""
    from yt8m.classifier.export import export_model

    if output.resolve() == Path(train_dir).resolve():
        raise Yt8mError(f"{output}: the export must not replace the train dir")
    _refuse_context_model(train_dir)
    path = export_model(train_dir, output, overwrite=overwrite, vocabulary=vocabulary)
    console.print(f"exported SavedModel to {path}", markup=False, highlight=False, soft_wrap=True)
