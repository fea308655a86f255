"""`yt8m extract`: raw videos -> YT8M frame-level records (quantized rgb + audio)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from yt8m.app.console import console, error_console, print_error, print_warning
from yt8m.core import MAX_FRAMES, Yt8mError

WEIGHTS_HELP = "yt8m (the official 2015 Inception-v3 + VGGish, YT8M-compatible), keras, hub:HANDLE or random."
RANDOM_WEIGHTS_WARNING = (
    "--weights random: the networks have RANDOM weights; these features are NOT YouTube-8M "
    "features and every record is marked yt8m_compatible=0 (smoke tests and benchmarks only)"
)
PREVIEW_SHARDS = 3


def extract(
    inputs: list[str] = typer.Argument(..., help="Video files, folders (searched recursively) or glob patterns."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output TFRecord; with --shard-size: OUT-00000-of-000NN.tfrecord."
    ),
    labels: Optional[Path] = typer.Option(
        None, "--labels", help="CSV of `path_or_id,label;label` rows (or with a header `id,labels`)."
    ),
    labels_from_folders: bool = typer.Option(
        False, "--labels-from-folders", help="Each video's class is its parent folder's name."
    ),
    label_map: Optional[Path] = typer.Option(
        None, "--label-map",
        help="Class names, one per line in index order (default with --labels-from-folders: "
        "built from the folder names and saved as OUT.label_map.txt).",
    ),
    shard_size: Optional[int] = typer.Option(None, "--shard-size", min=1, help="Records per output shard."),
    fps: float = typer.Option(1.0, "--fps", help="Frames (and audio examples) per second; YT8M uses 1."),
    max_frames: int = typer.Option(MAX_FRAMES, "--max-frames", min=0, help="Frames per video at most (0 = no limit)."),
    sampling: str = typer.Option(
        "mediapipe", "--sampling",
        help="mediapipe: frames at t = 0, 1, 2 ... s; legacy: the old Python extractor's rule.",
    ),
    no_audio: bool = typer.Option(False, "--no-audio", help="Skip audio; write neutral audio features."),
    models_dir: Optional[Path] = typer.Option(
        None, "--models-dir", help="Folder with the official model files (default: the yt8m cache)."
    ),
    weights: str = typer.Option("yt8m", "--weights", help=WEIGHTS_HELP),
    rgb_pca: Optional[Path] = typer.Option(None, "--rgb-pca", help="RGB PCA to use instead of the default one."),
    audio_pca: Optional[Path] = typer.Option(None, "--audio-pca", help="Audio PCA to use instead of the default one."),
    precision: str = typer.Option(
        "float32", "--precision", hidden=True,
        help="float32, or bfloat16 for benchmarks only: it fails the byte-agreement bar, records are marked not YT8M-compatible.",
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Frames per network batch (across videos)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Video decoding threads."),
    resume: bool = typer.Option(False, "--resume", help="Skip ids already in the complete output shards."),
    id_from: str = typer.Option("stem", "--id-from", help="Record id: the file's stem, or its path (relative to the folder given)."),
) -> None:
    """Extract YT8M features (rgb + audio, 1 per second) from videos into TFRecords."""
    from yt8m.classifier import records
    from yt8m.extractor import pipeline
    from yt8m.extractor.video import check_sampling

    check_sampling(sampling)
    if id_from not in pipeline.ID_SOURCES:
        raise Yt8mError(f"--id-from must be {' or '.join(pipeline.ID_SOURCES)}, got {id_from!r}")
    if labels is not None and labels_from_folders:
        raise Yt8mError("give either --labels or --labels-from-folders, not both")
    if label_map is not None and labels is None and not labels_from_folders:
        raise Yt8mError("--label-map needs --labels or --labels-from-folders")
    if not fps > 0:
        raise Yt8mError(f"--fps must be > 0, got {fps}")

    found = pipeline.collect_videos(inputs)
    items = _make_items(found, output, labels, labels_from_folders, label_map, id_from, resume, pipeline)
    pipeline.check_unique_ids(items)

    skipped = 0
    if resume:
        done = records.existing_ids(output)
        skipped = sum(1 for item in items if item.video_id in done)
        items = [item for item in items if item.video_id not in done]
        if skipped:
            console.print(f"resuming: {skipped} video(s) already in {output.name}, skipping them", highlight=False)

    from yt8m.extractor.backbones import load_feature_models

    models = load_feature_models(
        weights=weights,
        models_dir=models_dir,
        precision=precision,
        audio=not no_audio,
        rgb_pca_path=rgb_pca,
        audio_pca_path=audio_pca,
    )
    for message in models.warnings:
        print_warning(message)
    if models.weights == "random" and not any("random" in message.lower() for message in models.warnings):
        print_warning(RANDOM_WEIGHTS_WARNING)
    if fps != 1.0:
        print_warning(f"--fps {fps:g}: YouTube-8M records have 1 frame per second; models trained on YT8M expect that")

    extractor = pipeline.FeatureExtractor(
        models, fps=fps, max_frames=max_frames, sampling=sampling, audio=not no_audio,
        batch_size=batch_size, workers=workers,
    )
    totals = _Totals()
    started = time.perf_counter()
    writer = records.ShardWriter(output, shard_size=shard_size, resume=resume)
    try:
        with _progress_bar(len(items)) as advance:
            for result in extractor.extract(items, progress=advance):
                totals.add(result)
                if result.ok:
                    writer.write(result.features)
                else:
                    print_error(result.error or f"{result.input.path}: failed")
    except KeyboardInterrupt:
        writer.abort()  # complete shards stay for --resume
        hint = "complete shards were kept: rerun with --resume to continue" if shard_size else (
            "nothing was written; use --shard-size to keep completed shards of an interrupted run")
        print_warning(f"interrupted after {totals.videos} video(s); {hint}")
        raise
    except BaseException:
        writer.abort()
        raise
    written = writer.close()
    _print_summary(totals, written, skipped, time.perf_counter() - started, models.weights, no_audio)
    if totals.failed:
        raise typer.Exit(1)


def _make_items(found, output, labels_csv, from_folders, label_map_path, id_from, resume, pipeline):
    """VideoInputs with ids and labels from the CSV or the folder names (label map saved if built)."""
    names = pipeline.read_label_map(label_map_path) if label_map_path is not None else None
    table = pipeline.read_labels_csv(labels_csv, names) if labels_csv is not None else None
    if from_folders:
        if names is None:
            saved = pipeline.label_map_path_for(output)
            existing = pipeline.read_label_map(saved) if resume and saved.exists() else None
            names = pipeline.folder_label_map([video.path for video in found], existing)
            pipeline.write_label_map(saved, names)
            console.print(f"label map: {len(names)} classes from folder names, saved to {saved}", highlight=False)
        else:
            unknown = sorted({video.path.parent.name for video in found} - set(names))
            if unknown:
                raise Yt8mError(f"{label_map_path}: has no class for folder(s) {', '.join(unknown[:5])}")
    items = []
    unlabelled = 0
    for video in found:
        video_id = pipeline.video_id_for(video, id_from)
        item_labels: tuple[int, ...] = ()
        if from_folders:
            item_labels = (names.index(video.path.parent.name),)
        elif table is not None:
            match = pipeline.lookup_labels(table, video_id, video)
            if match is None:
                unlabelled += 1
            else:
                item_labels = match
        items.append(pipeline.VideoInput(video.path, video_id, item_labels))
    if unlabelled:
        print_warning(f"{labels_csv}: has no row for {unlabelled} of {len(items)} video(s); they get no labels")
    return items


class _Totals:
    def __init__(self) -> None:
        self.videos = self.frames = self.failed = self.audio_missing = 0
        self.seconds = 0.0

    def add(self, result) -> None:
        if not result.ok:
            self.failed += 1
            return
        self.videos += 1
        self.frames += result.frames
        self.seconds += result.seconds
        if result.audio == "missing":
            self.audio_missing += 1


class _progress_bar:
    """A rich progress bar on a terminal (videos done of total, frames); nothing otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.progress = None
        self.task = None

    def __enter__(self):
        if not console.is_terminal or not self.total:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("extracting"), BarColumn(), MofNCompleteColumn(), TextColumn("videos"),
            TextColumn("{task.fields[frames]} frames"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("extract", total=self.total, frames=0)
        return self.advance

    def advance(self, event) -> None:
        self.progress.update(self.task, completed=event.videos_done, frames=event.frames_done)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def _print_summary(totals: _Totals, written: list[Path], skipped: int, elapsed: float, weights: str, no_audio: bool) -> None:
    rate = totals.frames / elapsed if elapsed > 0 else 0.0
    console.print(
        f"extracted {totals.videos} video(s): {totals.frames} frames, {totals.seconds:.0f} s of video "
        f"in {elapsed:.1f} s ({rate:.1f} frames/s)",
        highlight=False,
    )
    if skipped:
        console.print(f"skipped (already extracted): {skipped}", highlight=False)
    if no_audio:
        console.print("audio disabled (--no-audio): neutral audio features written", highlight=False)
    elif totals.audio_missing:
        console.print(
            f"audio missing: {totals.audio_missing} video(s) have no audio stream "
            "(neutral audio features written, marked audio_missing=1)",
            highlight=False,
        )
    if totals.failed:
        error_console.print(f"failed: {totals.failed} file(s), see the errors above", highlight=False, markup=False)
    shown = ", ".join(str(path) for path in written[:PREVIEW_SHARDS])
    more = f" and {len(written) - PREVIEW_SHARDS} more" if len(written) > PREVIEW_SHARDS else ""
    console.print(f"wrote {len(written)} file(s): {shown}{more}", highlight=False, markup=False)
    if weights == "random":
        print_warning("features made with RANDOM weights: not YouTube-8M features")
