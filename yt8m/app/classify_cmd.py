"""`yt8m classify VIDEO...`: labels for video files as a table, JSON or CSV, optionally an HTML report.

The model is a train dir, a SavedModel (yt8m export or starter signature) or `baseline` (the
official baseline model in the cache). TensorFlow is imported inside the command only.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Optional

import typer

from yt8m.app.console import console, error_console, print_warning
from yt8m.core import Yt8mError

FORMATS = ("table", "json", "csv")
CSV_COLUMNS = ("source", "video_id", "start_seconds", "end_seconds", "rank", "index", "name", "score")
NO_MODEL_HINT = (
    "no model to classify with: run `yt8m models fetch --only baseline-model` (the official baseline, "
    "with `yt8m models fetch` for the feature networks), or train one with `yt8m train` and pass "
    "--model TRAIN_DIR (`yt8m demo` does it all offline)"
)


def _load_model(model: Optional[str], models_dir: Optional[Path]):
    from yt8m.classifier.predictor import BASELINE_NAME, load_predictor
    from yt8m.extractor import weights as weights_lib

    if model is None:
        if not weights_lib.is_present(weights_lib.BASELINE_MODEL, models_dir):
            raise Yt8mError(NO_MODEL_HINT)
        model = BASELINE_NAME
    return load_predictor(model, models_dir)


def _csv_text(results) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for result in results:
        for rank, label in enumerate(result.labels, 1):
            writer.writerow([result.source, result.video_id, "", "", rank, label.index, label.name, f"{label.score:.6f}"])
        for segment in result.segments:
            for rank, label in enumerate(segment.labels, 1):
                writer.writerow([
                    result.source, result.video_id, f"{segment.start_seconds:g}", f"{segment.end_seconds:g}",
                    rank, label.index, label.name, f"{label.score:.6f}",
                ])
    return buffer.getvalue()


def _print_tables(results) -> None:
    from rich.table import Table

    for result in results:
        header = f"{result.source}  ({result.duration_seconds:.0f}s, {result.num_frames} frames)"
        console.print(header, markup=False, highlight=False, soft_wrap=True)
        table = Table()
        table.add_column("#", justify="right")
        table.add_column("label")
        table.add_column("score", justify="right")
        for rank, label in enumerate(result.labels, 1):
            table.add_row(str(rank), label.name, f"{label.score:.3f}")
        console.print(table)
        if result.segments:
            segments = Table(title="segments", title_justify="left")
            segments.add_column("window")
            segments.add_column("top labels")
            for segment in result.segments:
                text = ", ".join(f"{l.name} {l.score:.2f}" for l in segment.labels[:3])
                segments.add_row(f"{segment.start_seconds:g}-{segment.end_seconds:g}s", text)
            console.print(segments)


def classify(
    videos: list[Path] = typer.Argument(..., help="Video files or folders."),
    model: Optional[str] = typer.Option(
        None, "--model", help="A train dir, a SavedModel dir, or 'baseline' (default: the cached baseline model)."
    ),
    top_k: int = typer.Option(20, "--top-k", min=1, help="Labels per video."),
    segments: bool = typer.Option(False, "--segments", help="Also label every 5-second window."),
    output_format: str = typer.Option("table", "--format", help="table, json or csv."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write a self-contained HTML report here."),
    weights: Optional[str] = typer.Option(
        None, "--weights",
        help="Feature networks: yt8m (official), keras, hub:HANDLE or random "
        "(default: those the model's training records were made with, else yt8m).",
    ),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="Folder with the official files (default: the cache)."),
) -> None:
    """Classify video files with a YT8M model: ranked labels per video (and per 5-second window)."""
    if output_format not in FORMATS:
        raise Yt8mError(f"--format {output_format}: choose one of {', '.join(FORMATS)}")
    from yt8m.classify import check_model_features, classify_files
    from yt8m.extractor.pipeline import collect_videos

    found = collect_videos([str(v) for v in videos])
    predictor = _load_model(model, models_dir)
    check_model_features(predictor)
    if weights is None:
        weights = predictor.feature_weights or "yt8m"
    status = error_console.status("classifying", spinner="dots") if error_console.is_terminal else None
    if status is not None:
        status.start()
    try:
        outcome = classify_files(
            [f.path for f in found],
            predictor,
            weights=weights,
            models_dir=models_dir,
            top_k=top_k,
            segments=segments,
            thumbnails=report is not None,
            progress=(lambda text: status.update(text)) if status is not None else None,
        )
    finally:
        if status is not None:
            status.stop()
    shown = set()
    for result in outcome.results:
        for warning in result.warnings:
            if warning not in shown:
                shown.add(warning)
                print_warning(warning)
    for error in outcome.errors:
        error_console.print(f"yt8m: error: {error}", markup=False, highlight=False, soft_wrap=True)
    if output_format == "json":
        typer.echo(json.dumps([r.to_dict() for r in outcome.results], indent=2))
    elif output_format == "csv":
        typer.echo(_csv_text(outcome.results), nl=False)
    else:
        _print_tables(outcome.results)
    if report is not None and outcome.results:
        from yt8m.app.report import write_report

        path = write_report(outcome.results, report)
        error_console.print(f"wrote report {path}", markup=False, highlight=False, soft_wrap=True)
    if outcome.errors:
        raise typer.Exit(1)
