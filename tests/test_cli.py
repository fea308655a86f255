"""The CLI shell and `yt8m inspect`: help, version, summaries, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from yt8m import __version__
from yt8m.app import cli
from yt8m.app.cli import main
from yt8m.data.shards import ShardWriter
from yt8m.core import VideoFeatures


def write_records(path, videos):
    with ShardWriter(path) as writer:
        for video in videos:
            writer.write(video)
    return path


def video(video_id, frames, labels, **kwargs):
    return VideoFeatures(
        video_id,
        np.full((frames, 1024), 128, np.uint8),
        np.full((frames, 128), 127, np.uint8),
        labels=labels,
        **kwargs,
    )


def test_help_lists_commands_and_version(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "inspect" in out and "Usage" in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"yt8m {__version__}"


def test_console_script_help_is_quiet_and_fast():
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from yt8m.app.cli import entry; sys.argv=['yt8m','--help']; entry()"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and "inspect" in result.stdout
    assert result.stderr == ""
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, yt8m.app.cli; print('tensorflow' in sys.modules)"],
        capture_output=True, text=True, timeout=60,
    )
    assert imported.stdout.strip() == "False"  # TensorFlow loads only when a command needs it


class _Exited(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@pytest.fixture
def quick_exits(monkeypatch) -> list[int]:
    """os._exit replaced by an exception that records its status."""
    calls: list[int] = []

    def fake_exit(code: int) -> None:
        calls.append(code)
        raise _Exited(code)

    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    return calls


def test_one_clip_commands_end_without_the_teardown(tmp_path, monkeypatch, capsys, quick_exits):
    """`extract` / `classify` skip TensorFlow's teardown; their output is flushed and their status kept."""
    import tensorflow  # noqa: F401 - loaded, as after any extract or classify

    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    monkeypatch.setattr(sys, "argv", ["yt8m", "extract", str(bad), "-o", str(tmp_path / "out.tfrecord")])
    with pytest.raises(_Exited):
        cli.entry()
    assert quick_exits == [1]
    assert "empty.mp4" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tfrecord"))

    # other commands, and Beam runs, exit through the interpreter as usual
    for argv in (["inspect", str(tmp_path / "missing.tfrecord")], ["extract", str(bad), "-o", str(tmp_path / "b.tfrecord"), "--runner=DirectRunner"]):
        monkeypatch.setattr(sys, "argv", ["yt8m", *argv])
        with pytest.raises(SystemExit) as exited:
            cli.entry()
        assert exited.value.code == 1, argv
    assert quick_exits == [1]


def test_quick_exit_keeps_the_printed_lines_in_a_real_process(tmp_path):
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from yt8m.app.cli import entry; sys.argv[0] = 'yt8m'; entry()",
         "extract", str(bad), "-o", str(tmp_path / "out.tfrecord")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "empty.mp4" in result.stderr and "error" in result.stderr


def test_inspect_summarises_records(tmp_path, capsys, shared_data):
    path = write_records(tmp_path / "a.tfrecord", [
        video("v0", 3, [0, 2]),
        video("v1", 5, [0]),
        video("v2", 10, [], segment_start_times=[0, 5], segment_end_times=[5, 10],
              segment_labels=[2, 2], segment_scores=[1.0, 0.0]),
    ])
    assert main(["inspect", str(path), "--json", "--vocabulary", str(shared_data / "vocabulary.csv")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["videos"] == 3
    assert summary["frames"] == {"min": 3, "mean": 6.0, "max": 10}
    assert summary["top_labels"][0] == {"label": 0, "name": "Game", "videos": 2}
    assert summary["top_labels"][1]["name"] == "Vehicle"
    assert summary["videos_without_labels"] == 1
    assert summary["segments"]["videos_with_segments"] == 1
    assert summary["segments"]["rated_segments"] == 2 and summary["segments"]["positive"] == 1


def test_inspect_table_output_and_random_weight_warning(tmp_path, capsys):
    path = write_records(tmp_path / "b.tfrecord", [video("x", 2, [5], extras={"weights": "random", "yt8m_compatible": 0})])
    assert main(["inspect", str(path)]) == 0
    captured = capsys.readouterr()
    assert "videos" in captured.out and "not YT8M-compatible features" in captured.out
    assert "RANDOM weights" in captured.err


def test_inspect_bad_files_give_one_line_each_and_exit_1(tmp_path, capsys):
    good = write_records(tmp_path / "good.tfrecord", [video("g", 2, [1])])
    truncated = tmp_path / "truncated.tfrecord"
    truncated.write_bytes(good.read_bytes()[:-10])
    assert main(["inspect", str(good), str(truncated), "--json"]) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["videos"] == 1  # the good file is still summarised
    errors = [line for line in captured.err.splitlines() if line.startswith("yt8m: error:")]
    assert errors == [f"yt8m: error: {truncated}: not a valid TFRecord file: truncated at record 0"]
    assert "Traceback" not in captured.err
    assert main(["inspect", str(tmp_path / "none*.tfrecord")]) == 1
    assert "matches no record files" in capsys.readouterr().err


def test_inspect_video_level_records(tmp_path, capsys):
    import tensorflow as tf

    from yt8m.data.records import to_video_level_example

    path = tmp_path / "video_level.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        example = video("vl", 0, [4], mean_rgb=np.zeros(1024, np.float32), mean_audio=np.zeros(128, np.float32))
        writer.write(to_video_level_example(example).SerializeToString())
    assert main(["inspect", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["video_level_records"] == 1 and summary["frame_level_records"] == 0


def test_models_list_shows_classifier_architectures(capsys):
    from yt8m.classifier.models import list_models

    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
