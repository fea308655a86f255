"""Output a person and a script can read: no hard wrapping off a terminal, conventional help."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from rich.table import Table

from yt8m.app.cli import app, main
from yt8m.app.console import _Console
from yt8m.core import VideoFeatures
from yt8m.data.shards import ShardWriter

LONG_NAME = "A class name far longer than any terminal " + "with many words in it " * 6 + "end"
TYPE_NAMES = re.compile(r"<(?:bool|int|float|str|path|file|dir|list\[[^\]]*\]|int range|float range)>|\{\w+\}")


def _commands(group=None, prefix=()):
    """Every command path of the CLI, e.g. ("models", "fetch")."""
    import typer.main

    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if getattr(command, "commands", None):
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,)


def test_console_wraps_on_a_terminal_but_not_into_a_pipe():
    """The same long line and table: wrapped at 80 columns on a terminal, whole lines otherwise."""
    long_line = "wrote /" + "/".join(["folder"] * 40) + "/records.tfrecord"
    for terminal in (True, False):
        out = io.StringIO()
        console = _Console(file=out, force_terminal=terminal, width=80 if terminal else None,
                           color_system=None)
        console.print(long_line, highlight=False)
        table = Table(title="labels")
        table.add_column("name")
        table.add_column("videos")
        table.add_row(LONG_NAME, "3")
        console.print(table)
        lines = out.getvalue().splitlines()
        if terminal:
            assert max(len(line) for line in lines) <= 80
            assert long_line not in lines
        else:
            assert long_line in lines
            assert any(LONG_NAME in line for line in lines)


def test_piped_cli_output_wider_than_80_columns_is_not_split(tmp_path):
    """`yt8m inspect` into a pipe: a long record path in errors and a long class name in the table
    each stay on one line (rich used to hard-wrap both at 80 columns)."""
    folder = tmp_path.joinpath(*(["a-rather-long-folder-name"] * 6))
    folder.mkdir(parents=True)
    records = folder / "videos.tfrecord"
    with ShardWriter(records) as writer:
        writer.write(VideoFeatures("v0", np.full((3, 1024), 128, np.uint8), np.full((3, 128), 127, np.uint8),
                                   labels=[1]))
    broken = folder / "broken-file-with-a-long-name.tfrecord"
    broken.write_bytes(b"not a record file at all")
    label_map = tmp_path / "label_map.txt"
    label_map.write_text(f"zero\n{LONG_NAME}\ntwo\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "TERMINAL_WIDTH")}
    completed = subprocess.run(
        [sys.executable, "-c", "import sys; from yt8m.app.cli import entry; sys.argv[0] = 'yt8m'; entry()",
         "inspect", str(records), str(broken), "--vocabulary", str(label_map)],
        capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 1, completed.stderr[-2000:]
    assert len(str(broken)) > 80 and len(LONG_NAME) > 80
    out_lines = completed.stdout.splitlines()
    assert any(LONG_NAME in line for line in out_lines), completed.stdout
    error_lines = [line for line in completed.stderr.splitlines() if line.startswith("yt8m: error:")]
    assert len(error_lines) == 1 and str(broken) in error_lines[0], completed.stderr


@pytest.mark.parametrize("command", list(_commands()), ids=" ".join)
def test_help_shows_conventional_metavars(command, capsys):
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Usage: yt8m " + " ".join(command) in text
    assert not TYPE_NAMES.search(text), TYPE_NAMES.search(text).group(0)
    # Flags take no value, so they show none: "--help  Show this message and exit."
    assert re.search(r"--help\s+Show this message", text)
    assert "…" not in text  # no option name or metavar cut (help is laid out wide enough off a tty)


def test_help_metavars_say_what_to_type(capsys):
    assert main(["extract", "--help"]) == 0
    text = capsys.readouterr().out
    assert "Usage: yt8m extract [OPTIONS] INPUTS..." in text
    assert re.search(r"--batch-size\s+N \[x>=1\]", text)
    assert re.search(r"--fps\s+NUM\s", text)
    assert re.search(r"--output\s+-o\s+(?:PATH|FILE|TEXT)\s", text)
    assert re.search(r"--no-audio\s+Skip audio", text)
