"""`yt8m inspect`: summarise YT8M record files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from yt8m.app.console import console, print_error, print_warning


def inspect(
    records: list[str] = typer.Argument(..., help="Record files, directories or glob patterns."),
    vocabulary: Optional[Path] = typer.Option(
        None, "--vocabulary", help="vocabulary.csv or label map for class names (default: the cached one)."
    ),
    top: int = typer.Option(20, "--top", min=0, help="How many of the most frequent labels to list."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise YT8M records: record count, frames per video, label frequency, segment labels."""
    from yt8m.data.inspection import summarize_records
    from yt8m.data.vocabulary import try_load_vocabulary

    vocab = try_load_vocabulary(vocabulary)
    summary = summarize_records(records)
    names = vocab.name if vocab else None
    only_errors = summary.videos == 0 and bool(summary.errors)  # nothing was read: the errors say it all
    if as_json:
        typer.echo(json.dumps(summary.to_dict(names, top), indent=2))
    elif not only_errors:
        _print_summary(summary, names, top)
    for error in summary.errors:
        print_error(error)
    if summary.random_weight_videos:
        print_warning(
            f"{summary.random_weight_videos} video(s) were extracted with RANDOM weights: "
            "their features are not YouTube-8M features"
        )
    if summary.errors:
        raise typer.Exit(1)


def _print_summary(summary, names, top: int) -> None:
    overview = Table(title="YT8M records", show_header=False, title_justify="left")
    overview.add_row("files", str(len(summary.files)))
    overview.add_row("videos", str(summary.videos))
    if summary.video_level:
        overview.add_row("video-level records", str(summary.video_level))
    if summary.frames:
        overview.add_row(
            "frames per video",
            f"min {summary.min_frames}  mean {summary.mean_frames:.1f}  max {summary.max_frames}",
        )
    overview.add_row("distinct labels", str(len(summary.label_counts)))
    overview.add_row("videos without labels", str(summary.videos_without_labels))
    if summary.videos_with_segments:
        overview.add_row(
            "segment labels",
            f"{summary.videos_with_segments} videos, {summary.segment_count} rated segments "
            f"({summary.segment_positive} positive)",
        )
    else:
        overview.add_row("segment labels", "none")
    if summary.audio_missing:
        overview.add_row("videos without audio", str(summary.audio_missing))
    if summary.not_yt8m_compatible:
        overview.add_row("not YT8M-compatible features", str(summary.not_yt8m_compatible))
    console.print(overview)
    if top and summary.label_counts:
        labels = Table(title=f"top {top} labels", title_justify="left")
        labels.add_column("label", justify="right")
        labels.add_column("name")
        labels.add_column("videos", justify="right")
        for label, count in summary.label_counts.most_common(top):
            labels.add_row(str(label), names(label) if names else "", str(count))
        console.print(labels)
