"""`yt8m extract`: raw videos -> YT8M frame-level records (quantized rgb + audio).

Parse -> `yt8m.extractor.job.extract` -> print. The rules (output path, labels, resume, probing
before loading models, what a failed run leaves) live in the library; this module maps its
parameter names to the option names in error messages and prints its events and summary.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import typer

from yt8m.app.console import console, error_console, print_error, print_warning
from yt8m.app.flags import cli_message
from yt8m.core import MAX_FRAMES, Yt8mError

WEIGHTS_HELP = "yt8m (the official 2015 Inception-v3 + VGGish, YT8M-compatible), keras, hub:HANDLE or random."
PREVIEW_SHARDS = 3
# Library parameter -> CLI option, for error messages (the library speaks of parameters).
OPTION_NAMES = {
    "batch_size": "--batch-size", "max_frames": "--max-frames", "shard_size": "--shard-size", "id_from": "--id-from",
    "labels_from_folders": "--labels-from-folders", "label_map": "--label-map", "models_dir": "--models-dir",
    "rgb_pca": "--rgb-pca", "audio_pca": "--audio-pca", "weights": "--weights", "precision": "--precision",
    "sampling": "--sampling", "workers": "--workers", "fps": "--fps", "overwrite=True": "--overwrite",
    "resume=True": "--resume", "labels (a CSV)": "--labels", "output": "-o", "trust_model": "--trust-model",
    "runner": "--runner", "beam_options": "--beam-option",
}
_OPTION_RE = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(name) for name in OPTION_NAMES) + r")(?![\w=])(?!\s*\(--)"
)


def option_names(message: str) -> str:
    """A library error with its parameter names replaced by this command's option names."""
    return _OPTION_RE.sub(lambda match: OPTION_NAMES[match.group(1)], message)


def extract(
    inputs: list[str] = typer.Argument(..., help="Video files, folders (searched recursively) or glob patterns."),
    output: str = typer.Option(
        ..., "-o", "--output",
        help="Output TFRecord (with --shard-size: OUT-00000-of-000NN.tfrecord). An existing folder or a path "
        "ending in / means: write NAME.tfrecord into it, NAME being the single input's name (else 'features').",
    ),
    # File options are str, not Path: Path("gs://b/x") is gs:/b/x, and Beam runs read gs:// / s3:// paths.
    labels: Optional[str] = typer.Option(
        None, "--labels", metavar="FILE", help="CSV of `path_or_id,label;label` rows (or with a header `id,labels`)."
    ),
    labels_from_folders: bool = typer.Option(
        False, "--labels-from-folders", help="Each video's class is its parent folder's name."
    ),
    label_map: Optional[str] = typer.Option(
        None, "--label-map", metavar="FILE",
        help="Class names, one per line in index order (default with --labels-from-folders: "
        "built from the folder names and saved as OUT.label_map.txt).",
    ),
    shard_size: Optional[int] = typer.Option(None, "--shard-size", min=1, help="Records per output shard."),
    fps: float = typer.Option(1.0, "--fps", help="Frames (and audio examples) per second; YT8M uses 1."),
    max_frames: int = typer.Option(MAX_FRAMES, "--max-frames", min=0, help="Frames per video at most (0 = no limit)."),
    sampling: str = typer.Option(
        "mediapipe", "--sampling",
        help="mediapipe: MediaPipe's resampler (the nearest frame to t = 0, 1, 2 ... s); first-after: the first "
        "frame at or after each second; legacy: the old Python extractor's rule.",
    ),
    no_audio: bool = typer.Option(False, "--no-audio", help="Skip audio; write neutral audio features."),
    models_dir: Optional[str] = typer.Option(
        None, "--models-dir", metavar="DIR", help="Folder with the official model files (default: the yt8m cache)."
    ),
    weights: str = typer.Option("yt8m", "--weights", help=WEIGHTS_HELP),
    rgb_pca: Optional[str] = typer.Option(None, "--rgb-pca", metavar="PATH", help="RGB PCA to use instead of the default one."),
    audio_pca: Optional[str] = typer.Option(None, "--audio-pca", metavar="PATH", help="Audio PCA to use instead of the default one."),
    precision: str = typer.Option(
        "float32", "--precision", hidden=True,
        help="float32, or bfloat16 for benchmarks only: it fails the byte-agreement bar, records are marked not YT8M-compatible.",
    ),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", min=1, help="Frames per network batch (across videos). [default: 32; 128 on a GPU]"
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=1, help="Video decoding threads. [default: 2; one per core up to 8 with a GPU]"
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run: skip ids already in the output."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing output (only once this run has completed)."
    ),
    id_from: str = typer.Option("stem", "--id-from", help="Record id: the file's stem, or its path (relative to the folder given)."),
    trust_model: bool = typer.Option(
        False, "--trust-model",
        help="Run a --weights hub: SavedModel even if its graph reads/writes files or calls Python (it is a program).",
    ),
    # --- Beam runner (yt8m/extractor/beam.py) ---
    runner: Optional[str] = typer.Option(
        None, "--runner",
        help="Run on Apache Beam (the beam extra): DirectRunner or PrismRunner here; DataflowRunner, FlinkRunner or "
        "SparkRunner on a cluster. Shards OUT-00000-of-000NN.tfrecord, failed files in OUT-errors.csv.",
    ),
    beam_option: Optional[list[str]] = typer.Option(
        None, "--beam-option", help="A Beam pipeline option KEY=VALUE (repeatable); Beam's own flags may also follow `--`."
    ),
    # --- end Beam runner ---
) -> None:
    """Extract YT8M features (rgb + audio, 1 per second) from videos into TFRecords."""
    from yt8m.extractor.job import ExtractOptions, extract as run_in_process

    options = ExtractOptions(
        weights=weights, models_dir=models_dir, fps=fps, max_frames=max_frames, sampling=sampling,
        no_audio=no_audio, rgb_pca=rgb_pca, audio_pca=audio_pca, precision=precision, batch_size=batch_size,
        workers=workers, shard_size=shard_size, resume=resume, overwrite=overwrite, labels=labels,
        labels_from_folders=labels_from_folders, label_map=label_map, id_from=id_from, trust_model=trust_model,
    )
    # --- Beam runner: Beam's own flags after `--` arrive at the end of the inputs ---
    flags_at = next((index for index, text in enumerate(inputs) if text.startswith("--")), len(inputs))
    if flags_at < len(inputs) and runner is None:
        raise Yt8mError(f"{inputs[flags_at]}: Beam pipeline flags (after --) need --runner")
    inputs, beam_flags = inputs[:flags_at], inputs[flags_at:]
    options.runner, options.beam_options = runner, tuple(beam_option or ()) + tuple(beam_flags)
    # --- end Beam runner ---
    if runner is not None:
        from yt8m.extractor.beam import extract as run_extract  # the optional `beam` extra
    else:
        run_extract = run_in_process
    events = _Events()
    try:
        summary = run_extract(inputs, output, options, progress=events)
    except Yt8mError as error:
        events.stop()
        raise Yt8mError(option_names(str(error))) from None
    except KeyboardInterrupt:
        events.stop()
        hint = "complete shards were kept: rerun with --resume to continue" if shard_size else (
            "the complete records were kept: rerun with --resume to continue")
        print_warning(f"interrupted after {events.videos_done} video(s); {hint}")
        raise
    finally:
        events.stop()
    _print_summary(summary, no_audio)
    if summary.failed:
        raise typer.Exit(1)


class _Events:
    """Prints the job's messages as they come and shows a progress bar on a terminal."""

    def __init__(self) -> None:
        self.progress: Any = None
        self.task: Any = None
        self.videos_done = 0

    def __call__(self, event: Any) -> None:
        from yt8m.extractor.job import ERROR, INFO, JobMessage, JobStarted

        if isinstance(event, JobMessage):
            # Warnings and notes are prose ("RANDOM weights"): only backquoted parameters become options.
            text = cli_message(event.text) if event.level != ERROR else event.text
            if event.level == ERROR:
                print_error(text)
            elif event.level == INFO:
                console.print(text, highlight=False, markup=False)
            else:
                print_warning(text)
        elif isinstance(event, JobStarted):
            self.start(event.videos)
        else:  # the pipeline's ExtractProgress
            self.videos_done = event.videos_done
            if self.progress is not None:
                self.progress.update(self.task, completed=event.videos_done, frames=event.frames_done)

    def start(self, total: int) -> None:
        if not console.is_terminal or not total:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("extracting"), BarColumn(), MofNCompleteColumn(), TextColumn("videos"),
            TextColumn("{task.fields[frames]} frames"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("extract", total=total, frames=0)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _print_summary(summary: Any, no_audio: bool) -> None:
    from yt8m.extractor.job import is_random

    say = lambda text: console.print(text, highlight=False, markup=False)  # noqa: E731
    if summary.skipped_by_extension:
        counts = ", ".join(f"{count} {suffix or '(no extension)'}" for suffix, count in sorted(summary.skipped_by_extension.items()))
        say(f"skipped in folders (not video extensions): {counts}")
    if summary.models_loaded or summary.videos:
        rate = summary.frames / summary.elapsed if summary.elapsed > 0 else 0.0
        say(
            f"extracted {summary.videos} video(s): {summary.frames} frames, {summary.seconds:.0f} s of video "
            f"in {summary.elapsed:.1f} s ({rate:.1f} frames/s)"
        )
    if summary.capped:
        say(f"capped: {summary.capped} video(s) were cut at --max-frames; rerun with --max-frames 0 for all frames")
    if summary.skipped:
        say(f"skipped (already extracted): {summary.skipped}")
    if no_audio:
        say("audio disabled (--no-audio): neutral audio features written")
    elif summary.audio_missing:
        say(
            f"audio missing: {summary.audio_missing} video(s) have no audio stream "
            "(neutral audio features written, marked audio_missing=1)"
        )
    if summary.failed:
        error_console.print(f"failed: {summary.failed} file(s), see the errors above", highlight=False, markup=False)
    if summary.written:
        shown = ", ".join(str(path) for path in summary.written[:PREVIEW_SHARDS])
        more = f" and {len(summary.written) - PREVIEW_SHARDS} more" if len(summary.written) > PREVIEW_SHARDS else ""
        say(f"wrote {len(summary.written)} file(s): {shown}{more}")
    elif summary.videos == 0 and summary.failed:
        error_console.print(
            f"nothing was written: no input could be extracted ({summary.output} is unchanged)",
            highlight=False, markup=False,
        )
    elif summary.videos == 0:
        say(f"nothing to extract: every input is already in {summary.output}")
    if is_random(summary) and summary.videos:
        print_warning("features made with RANDOM weights: not YouTube-8M features")
