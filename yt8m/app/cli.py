"""The `yt8m` command line: one typer app; each command parses, calls the library, prints.

TensorFlow is imported lazily inside commands so `yt8m --help` is instant, and its import noise
is silenced before that first import.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import typer

from yt8m import __version__
from yt8m._tf import import_tensorflow_quietly
from yt8m.app import inspect_cmd
from yt8m.app import classify_cmd
from yt8m.app import demo_cmd
from yt8m.app import extract_cmd
from yt8m.app import models_cmd
from yt8m.app import train_cmd
from yt8m.app import ensemble_cmd
from yt8m.app import synth_cmd
from yt8m.app import compact_cmd
from yt8m.app.console import ConventionalGroup, print_error
from yt8m.app.flags import cli_message
from yt8m.core import Yt8mError

app = typer.Typer(
    name="yt8m",
    cls=ConventionalGroup,  # help shows FILE / N / INPUTS..., not Python type names
    help="Raw videos to YouTube-8M features, records, classifiers and labels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"yt8m {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Show the version and exit.", callback=_show_version, is_eager=True
    ),
) -> None:
    """Raw videos to YouTube-8M features, records, classifiers and labels."""


app.command("inspect", help="Summarise YT8M records: counts, frames, labels, segments.")(inspect_cmd.inspect)
app.command("classify", help="Classify video files: ranked labels (table, JSON, CSV) and an HTML report.")(classify_cmd.classify)
app.command("demo", help="Offline demo: synthetic videos -> features -> fine-tuned model -> labels + HTML report.")(demo_cmd.demo)
app.command("extract", help="Extract YT8M features (rgb + audio) from videos into TFRecords.")(extract_cmd.extract)
app.command("synth", help="Write synthetic YT8M records with learnable class patterns (offline demo, tests).")(synth_cmd.synth)
app.command("train", help="Train a YT8M classifier on TFRecords (resumes from the train dir).")(train_cmd.train)
app.command("eval", help="Evaluate a trained classifier: Hit@1, PERR, GAP@20, mAP.")(train_cmd.evaluate)
app.command("predict", help="Write the Kaggle predictions CSV (top 20 per video) of a trained classifier.")(train_cmd.predict)
app.command("export", help="Export a trained classifier as a SavedModel (serialized and rgb_and_audio signatures).")(train_cmd.export)
app.command("ensemble", help="Weighted ensemble of prediction sets (.npz scores or CSVs); weights given, loaded or searched.")(ensemble_cmd.ensemble)
app.command("quantize", help="Quantize a trained classifier's weights (uint8 codes + codebook, float16, k-means) into a new bundle.")(compact_cmd.quantize)
app.command("merge", help="Merge 2+ classifiers with weights into ONE bundle and ONE SavedModel (one-graph ensemble).")(compact_cmd.merge)
app.command("distill-data", help="Write a distillation set: records plus the teacher models' top-k probabilities.")(compact_cmd.distill_data)
app.command("size", help="Size report of a bundle or SavedModel: parameters and bytes per part, total vs --max-size.")(compact_cmd.size)
app.add_typer(models_cmd.app, name="models", help="Official model files: fetch them (checked) and list what is present.")


class Terminated(KeyboardInterrupt):
    """SIGTERM (schedulers, preemptible machines) raised as an interruption: commands clean up as on Ctrl-C."""


SIGTERM_EXIT = 128 + signal.SIGTERM


_signals = {"terminated": False}  # typer turns the interruption into exit status 130: remember why


def _raise_terminated(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    _signals["terminated"] = True
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status; user errors become one line on stderr and status 1.

    SIGTERM is handled like SIGINT: the running command is interrupted (`Terminated`, a
    KeyboardInterrupt), keeps what it completed and says how to continue; exit status 143.
    """
    args = sys.argv[1:] if argv is None else argv
    previous = None
    _signals["terminated"] = False
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run(args, argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: list[str], argv: list[str] | None) -> int:
    if args and not set(args) & {"--help", "-h", "--version"}:
        import_tensorflow_quietly()
    try:
        app(args=argv, prog_name="yt8m")
    except SystemExit as exit_:
        code = exit_.code
        if _signals["terminated"]:
            print_error("terminated (SIGTERM)")
            return SIGTERM_EXIT
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Yt8mError as error:
        print_error(cli_message(str(error)))  # library parameters shown as options
        return 1
    except Terminated:
        print_error("terminated (SIGTERM)")
        return SIGTERM_EXIT
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    return 0


QUICK_EXIT_COMMANDS = frozenset({"extract", "classify"})
"""One-clip commands whose process ends without TensorFlow's teardown (~0.8 s on 2 cores, ~10 % of a
one-clip run): by the time they return, every output is closed, synced and renamed."""


def _command_of(args: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((arg for arg in args if not arg.startswith("-")), None)


def _quick_exit(code: int) -> None:
    """End the process now: flush what was printed, skip interpreter teardown."""
    for handler in logging.getLogger().handlers:  # what logging.shutdown would flush at exit
        handler.flush()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be shown anyway
            pass
    os._exit(code)


def entry() -> None:
    """Console-script entry point.

    `extract` and `classify` (not a Beam run) exit without the interpreter's teardown, which with
    TensorFlow loaded costs about as much as extracting a few seconds of video; other commands
    (training writes TensorBoard events at teardown) exit normally.
    """
    args = sys.argv[1:]
    code = main(args)
    beam = any(arg == "--runner" or arg.startswith("--runner=") for arg in args)
    if _command_of(args) in QUICK_EXIT_COMMANDS and not beam and "tensorflow" in sys.modules:
        _quick_exit(code)
    sys.exit(code)
