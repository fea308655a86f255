"""`yt8m models`: fetch the official model files (checked, unpacked) and list what is present."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from yt8m.app.console import console

app = typer.Typer(
    help="Official model files (Inception 2015, VGGish, YT8M PCAs, vocabulary): fetch and list.",
    no_args_is_help=True,
    add_completion=False,
)

MODELS_DIR_HELP = "Folder to use instead of the yt8m cache ($YT8M_HOME or ~/.cache/yt8m)."


def _human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


@app.command("list")
def list_files(
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help=MODELS_DIR_HELP),
) -> None:
    """Show every official file: present or missing, size, where it is."""
    from rich.table import Table

    from yt8m.extractor import weights

    root = weights.root(models_dir)
    table = Table(title=f"official files in {root}", title_justify="left")
    for column in ("name", "status", "size", "file"):
        table.add_column(column, overflow="fold")
    for row in weights.status(models_dir):
        optional = " (optional)" if row.name in weights.OPTIONAL else ""
        shown = row.path.relative_to(root) if row.path.is_relative_to(root) else row.path
        table.add_row(row.name, "present" if row.present else "missing" + optional, _human(row.size), str(shown))
    console.print(table)
    groups = ", ".join(f"{name} = {' + '.join(members)}" for name, members in weights.GROUPS.items())
    console.print(f"groups for --only: {groups}", highlight=False)
    _print_architectures()


def _print_architectures() -> None:
    """The classifier architectures `yt8m train --model` accepts, with their input level."""
    from rich.table import Table

    from yt8m.classifier.models import is_video_level, list_models

    table = Table(title="classifier architectures (yt8m train --model NAME)", title_justify="left")
    table.add_column("name")
    table.add_column("input")
    for name in list_models():
        table.add_row(name, "video-level (mean_rgb, mean_audio)" if is_video_level(name) else "frame-level")
    console.print(table)


@app.command("fetch")
def fetch(
    only: Optional[list[str]] = typer.Option(
        None, "--only", help="Fetch only these (repeat or comma-separate; names from `yt8m models list`)."
    ),
    everything: bool = typer.Option(False, "--all", help="Also the optional files (baseline model, Keras weights)."),
    force: bool = typer.Option(False, "--force", help="Download again even if a verified copy is present."),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help=MODELS_DIR_HELP),
    prepare: bool = typer.Option(
        True, "--prepare/--no-prepare",
        help="Once every default file is present, prepare the feature networks (~20 s) so that the first extract starts warm.",
    ),
) -> None:
    """Download the official files with SHA-256 checks and unpack the archives safely."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from yt8m.extractor import weights

    names = [part.strip() for item in only or [] for part in item.split(",") if part.strip()]
    todo = weights.expand(names or None, everything=everything)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        disable=not sys.stdout.isatty(),
        transient=True,
    )
    tasks: dict[str, int] = {}

    def advance(name: str, done: int, total: int | None) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=total)
        progress.update(tasks[name], completed=done, total=total)

    with progress:
        for name in todo:
            path = weights.fetch(name, directory=models_dir, force=force, progress=advance)
            console.print(f"{name}: {path}", highlight=False)
    if prepare:
        from yt8m.extractor.backbones import prepare_official_networks

        def say(text: str) -> None:
            console.print(text, highlight=False)

        if prepare_official_networks(models_dir, progress=say) is not None:
            console.print("feature networks prepared", highlight=False)
