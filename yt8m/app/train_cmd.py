"""`yt8m train`, `yt8m eval`, `yt8m predict`, `yt8m export`: the classifier commands.

Each parses its options, calls the library (`yt8m.api`, which holds the rules) and prints.
`yt8m.api` (and with it TensorFlow) is imported inside the commands only, so `yt8m --help` is instant.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from yt8m.app.console import console, error_console
from yt8m.core import DISTILL_LAMBDA, EMA_HALFLIFE, MAX_FRAMES, FeatureSpec

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
    None, "--tta-shifts",
    help="Also predict each segment from the video rolled by these frames, e.g. -1,0,1 (the 9th place's np.roll: -1 reads frames s+1..s+5).",
)
TTA_MODE_OPTION = typer.Option("roll", "--tta-mode", help="roll (wrap around the padded video, the 9th place's) or clamp (move the window inside the video).")
TTA_COMBINE_OPTION = typer.Option("rank", "--tta-combine", help="rank (fuse the shifts' rankings, place r weighs w0/(r+w0), the 9th place's) or mean (average the scores).")


def _feature_spec(names: Optional[str], sizes: Optional[str], max_frames: Optional[int]) -> Optional[FeatureSpec]:
    """The FeatureSpec the options ask for, or None when none of them was given (keep the saved one)."""
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
        help="Train on the 2019 segment labels (one example per rated 5-frame segment). On an existing "
        "video-level train dir it continues that dir as the 9th place did (weights, optimizer and schedule "
        "go on; unrated classes count as negatives; --set segment_label_weighting=rated-pairs for rated "
        "pairs only); a new train dir (e.g. with --init-from) counts rated (segment, class) pairs only.",
    ),
    segment_context: bool = typer.Option(
        False,
        "--segment-context",
        help="With --segment-labels: the model also sees the whole video (segment and video "
        "predictions mixed per class).",
    ),
    distill_from: Optional[list[str]] = typer.Option(
        None,
        "--distill-from",
        help="Distillation: teacher train dirs (repeat, or a comma list, for an ensemble) scored in the input "
        "pipeline, or 'records': the teacher scores `yt8m distill-data` wrote into the training records.",
    ),
    distill_lambda: float = typer.Option(
        DISTILL_LAMBDA, "--distill-lambda", help="Weight of the teacher: lambda x CE(teacher) + (1 - lambda) x CE(labels)."
    ),
    distill_weights: Optional[str] = typer.Option(
        None, "--distill-weights", help="Weights of the teachers, e.g. 0.6,0.4 (default: equal)."
    ),
    ema_from: Optional[Path] = typer.Option(
        None,
        "--ema-from",
        help="EMA stage (2018 1st place): a new train dir starting from this one's weights, keeping a moving "
        "average of every weight (batch-norm statistics too) that eval and export use.",
    ),
    ema_halflife: float = typer.Option(
        EMA_HALFLIFE, "--ema-halflife", help="With --ema-from: the average's half-life in steps (decay 1 - 1/halflife)."
    ),
) -> None:
    """Train a YT8M classifier on TFRecords, resuming from the train dir's latest checkpoint."""
    from yt8m import api

    device_list = [d.strip() for d in devices.split(",") if d.strip()] if devices else None
    compact = _compact_options(distill_from, distill_lambda, distill_weights, ema_from, ema_halflife, ema_decay)
    started = time.monotonic()
    try:
        with _ProgressPrinter(max_steps) as printer:
            result = api.train(
                train_data,
                train_dir,
                model,
                feature_spec=_feature_spec(feature_names, feature_sizes, max_frames),
                num_classes=num_classes,
                set_values=set_values or [],
                label_weights=label_weights,
                start_new_model=start_new_model,
                init_from=init_from,
                freeze_pooling_steps=freeze_pooling_steps,
                label_map=label_map,
                segment_labels=segment_labels,
                segment_context=segment_context,
                devices=device_list,
                export=export,
                progress=printer,
                batch_size=batch_size,
                base_learning_rate=base_learning_rate,
                learning_rate_decay=learning_rate_decay,
                learning_rate_decay_examples=learning_rate_decay_examples,
                max_steps=max_steps,
                num_epochs=num_epochs,
                ema_decay=ema_decay,
                **compact,
            )
    except KeyboardInterrupt as interrupt:  # the library saved a checkpoint and says how to resume
        for note in getattr(interrupt, "__notes__", []):
            error_console.print(note, markup=False, highlight=False, soft_wrap=True)
        raise
    elapsed = time.monotonic() - started
    say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    if ema_from is not None:
        say(f"EMA stage of {ema_from}: moving average of every weight, decay {result.config.training.ema_decay:.6g}")
    if distill_from:
        say(f"distilled from {', '.join(compact['distill_from'])} (lambda {distill_lambda:g})")
    if result.init is not None:
        kept = f"kept {result.init.copied} weights"
        head = "; classifier head re-initialised for the new classes" if result.init.head_reset else ""
        say(f"initialised from {result.init.source} (step {result.init.source_step}): {kept}{head}")
    if result.resume_note:
        say(f"resumed: {result.resume_note}")
    resumed = f" (resumed at step {result.start_step})" if result.start_step else ""
    say(f"trained {result.config.model} to step {result.step}{resumed} in {elapsed:.0f}s; checkpoint {result.checkpoint}")
    if result.export_dir is not None:
        say(f"exported SavedModel to {result.export_dir}")


def _compact_options(distill_from, distill_lambda, distill_weights, ema_from, ema_halflife, ema_decay) -> dict:
    """The compact-model options of `train` (distillation, EMA stage) as library arguments; {} when unused."""
    from yt8m.core import Yt8mError

    options: dict = {}
    teachers = [part.strip() for item in distill_from or [] for part in item.split(",") if part.strip()]
    if teachers:
        weights = None
        if distill_weights is not None:
            try:
                weights = [float(w) for w in distill_weights.split(",") if w.strip()]
            except ValueError:
                raise Yt8mError(f"--distill-weights must be comma-separated numbers, got {distill_weights!r}") from None
        options.update(distill_from=teachers, distill_lambda=distill_lambda, distill_weights=weights)
    elif distill_weights is not None:
        raise Yt8mError("--distill-weights needs --distill-from")
    if ema_from is not None:
        if ema_decay is not None:
            raise Yt8mError("--ema-decay and --ema-from: the EMA stage's decay is 1 - 1/--ema-halflife")
        options.update(ema_from=ema_from, ema_halflife=ema_halflife)
    return options


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
    tta_mode: str = TTA_MODE_OPTION,
    tta_combine: str = TTA_COMBINE_OPTION,
    segment_top_k: int = typer.Option(100_000, "--segment-top-k", min=1, help="Segments per class that count (MAP@K)."),
    predictions: Optional[Path] = typer.Option(
        None, "--predictions", help="With --segment-labels: score this Class,Segments CSV instead of a model."
    ),
) -> None:
    """Evaluate a trained model: Hit@1, PERR, GAP@20, mAP and loss (streaming over the records)."""
    from yt8m import api

    results = api.evaluate(
        eval_data,
        train_dir,
        batch_size=batch_size,
        top_k=top_k,
        segment_labels=segment_labels,
        segment_classes=segment_classes,
        tta_shifts=tta_shifts,
        segment_top_k=segment_top_k,
        predictions=predictions,
        tta_mode=tta_mode,
        tta_combine=tta_combine,
    )
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    elif segment_labels:
        title = str(predictions) if predictions is not None else f"{train_dir} at step {results['step']}"
        extra = f"  ({results['num_segments']} segments)" if "num_segments" in results else ""
        console.print(
            f"{title}: segment MAP@{segment_top_k} {results['segment_map']:.4f}{extra}",
            markup=False, highlight=False, soft_wrap=True,
        )
    else:
        from rich.table import Table

        table = Table(title=f"{train_dir} at step {results['step']}", title_justify="left")
        for key in EVAL_KEYS:
            table.add_column(EVAL_LABELS[key], justify="right")
        table.add_row(*(_format_metric(results.get(key)) for key in EVAL_KEYS))
        console.print(table)


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
    tta_mode: str = TTA_MODE_OPTION,
    tta_combine: str = TTA_COMBINE_OPTION,
) -> None:
    """Write the Kaggle predictions CSV (top 20 label/score pairs per video) for TFRecords."""
    from yt8m import api

    result = api.predict(
        input_data,
        train_dir,
        output,
        top_k=top_k,
        batch_size=batch_size,
        scores=scores,
        segment_labels=segment_labels,
        segment_classes=segment_classes,
        segment_max_pred=segment_max_pred,
        tta_shifts=tta_shifts,
        tta_mode=tta_mode,
        tta_combine=tta_combine,
    )
    if segment_labels:
        message = f"wrote segment predictions for {result.num_segments} segments to {result.csv_path}"
    else:
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
    max_size: Optional[str] = typer.Option(
        None, "--max-size", help="Refuse a SavedModel larger than this (e.g. 1GB, the 2018 limit), naming its largest parts."
    ),
) -> None:
    """Export a trained model as a SavedModel with `serialized` and `rgb_and_audio` signatures."""
    from yt8m import api

    path = api.export(train_dir, output, overwrite=overwrite, vocabulary=vocabulary, max_size=max_size)
    if max_size is not None:
        from yt8m.classifier.compact.size import format_size, size_report

        report = size_report(path, max_size)
        console.print(
            f"SavedModel {format_size(report.total_bytes)} of the {format_size(report.budget)} budget",
            markup=False, highlight=False, soft_wrap=True,
        )
    console.print(f"exported SavedModel to {path}", markup=False, highlight=False, soft_wrap=True)
