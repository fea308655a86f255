"""`yt8m classify VIDEO...`: labels for video files as a table, JSON or CSV, optionally an HTML report.

The model is a train dir, a SavedModel (yt8m export or starter signature) or `baseline` (the
official baseline model in the cache). The command parses, calls `yt8m.classification.classify`
(what `yt8m.classify` runs) and prints; the library (and TensorFlow) is imported inside the
command only. Frame options are extract's (`--fps`, `--max-frames`, `--sampling`); a video cut
by `--max-frames` is said on the console, in its JSON (`capped`) and in the report.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Optional

import typer

from yt8m.app.console import console, error_console, print_warning
from yt8m.app.flags import cli_message
from yt8m.core import MAX_FRAMES, Yt8mError

FORMATS = ("table", "json", "csv")
CSV_COLUMNS = ("source", "video_id", "start_seconds", "end_seconds", "rank", "index", "name", "score")


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
        if result.capped:
            whole = f" of {result.source_duration_seconds:.0f}s" if result.source_duration_seconds else ""
            header += f"  CAPPED: first {result.duration_seconds:.0f}s{whole} classified"
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
    videos: list[Path] = typer.Argument(..., help="Video files, folders (searched recursively) or glob patterns."),
    model: Optional[str] = typer.Option(
        None, "--model", help="A train dir, a SavedModel dir, or 'baseline' (default: the cached baseline model)."
    ),
    top_k: int = typer.Option(20, "--top-k", min=1, help="Labels per video."),
    segments: bool = typer.Option(False, "--segments", help="Also label every 5-second window."),
    output_format: str = typer.Option("table", "--format", help="table, json or csv."),
    report: Optional[str] = typer.Option(  # str: a Path would drop the trailing / that means "a folder"
        None, "--report",
        help="Also write a self-contained HTML report to this file (a folder, or a path ending in /: report.html in it).",
    ),
    weights: Optional[str] = typer.Option(
        None, "--weights",
        help="Feature networks: yt8m (official), keras, hub:HANDLE or random "
        "(default: those the model's training records were made with, else yt8m).",
    ),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="Folder with the official files (default: the cache)."),
    vocabulary: Optional[Path] = typer.Option(
        None, "--vocabulary", help="Class names for any model: a vocabulary.csv or a label map (one name per line)."
    ),
    fps: float = typer.Option(1.0, "--fps", help="Frames (and audio examples) per second; YT8M uses 1."),
    max_frames: int = typer.Option(
        MAX_FRAMES, "--max-frames", min=0,
        help="Frames per video at most (0 = no limit); a video cut there is marked capped.",
    ),
    sampling: str = typer.Option(
        "mediapipe", "--sampling", help="mediapipe, first-after or legacy (see yt8m extract --help)."
    ),
    trust_model: bool = typer.Option(
        False, "--trust-model",
        help="Run a SavedModel (--model, or --weights hub:) even if its graph reads/writes files or calls Python "
        "(it is a program). yt8m's own exports and fetched models are trusted.",
    ),
) -> None:
    """Classify video files with a YT8M model: ranked labels per video (and per 5-second window)."""
    if output_format not in FORMATS:
        raise Yt8mError(f"--format {output_format}: choose one of {', '.join(FORMATS)}")
    from yt8m import classification
    from yt8m.app.report import resolve_report_path, write_report

    report_path = resolve_report_path(report) if report is not None else None  # a mistake shows before any work
    status = error_console.status("classifying", spinner="dots") if error_console.is_terminal else None
    if status is not None:
        status.start()
    try:
        outcome = classification.classify(
            videos,
            model,
            weights=weights,
            models_dir=models_dir,
            top_k=top_k,
            segments=segments,
            vocabulary=vocabulary,
            thumbnails=report_path is not None,
            fps=fps,
            max_frames=max_frames,
            sampling=sampling,
            trust_model=trust_model,
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
                print_warning(cli_message(warning))
    if outcome.capped:
        print_warning(
            f"capped: {outcome.capped} video(s) were cut at --max-frames {max_frames}; "
            "rerun with --max-frames 0 for all frames"
        )
    for error in outcome.errors:
        error_console.print(f"yt8m: error: {error}", markup=False, highlight=False, soft_wrap=True)
    if output_format == "json":
        typer.echo(json.dumps([r.to_dict() for r in outcome.results], indent=2))
    elif output_format == "csv":
        typer.echo(_csv_text(outcome.results), nl=False)
    else:
        _print_tables(outcome.results)
    if report_path is not None and outcome.results:
        path = write_report(outcome.results, report_path)
        error_console.print(f"wrote report {path}", markup=False, highlight=False, soft_wrap=True)
    if outcome.errors:
        raise typer.Exit(1)
