"""`yt8m.extractor.job.extract`: the rules of a run, as a library call (the CLI only prints them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import media_cases  # tests/media_cases.py: media files built and damaged with PyAV
import numpy as np
import pytest

from yt8m.core import Yt8mError
from yt8m.data import records, shards
from yt8m.extractor import job
from yt8m.extractor.synthetic import write_test_video


@pytest.fixture(scope="module")
def random_models():
    return job.load_feature_models(weights="random")


@pytest.fixture
def loads(random_models, monkeypatch):
    """Record when (and whether) the job loads models; hand it the module's random ones."""
    calls: list[dict] = []

    def load(**kwargs):
        calls.append(kwargs)
        if not kwargs["audio"]:
            return dataclasses.replace(random_models, vggish=None, audio_pca=None)
        return random_models

    monkeypatch.setattr(job, "load_feature_models", load)
    return calls


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "three": write_test_video(folder / "three.mp4", 3.0, audio="sine"),
        "one": write_test_video(folder / "one.mp4", 1.0, audio=None),
    }


def _bad(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "notes.mp4"
    text.write_text("not a video\n" * 20)
    return [empty, text]


def test_output_folder_rule(tmp_path, clips, loads):
    folder = tmp_path / "existing"
    folder.mkdir()
    summary = job.extract([clips["three"]], folder, weights="random", max_frames=2)
    assert summary.written == [folder / "three.tfrecord"] and summary.output == folder / "three.tfrecord"
    # a trailing separator names a folder even before it exists; several inputs -> features.tfrecord
    fresh = f"{tmp_path / 'new'}/"
    summary = job.extract([clips["three"], clips["one"]], fresh, weights="random", max_frames=1)
    assert summary.written == [tmp_path / "new" / "features.tfrecord"]
    assert {v.video_id for v in records.read_records(str(summary.written[0]))} == {"three", "one"}
    assert not (tmp_path / "new").is_file()
    assert job.resolve_output(tmp_path / "x.tfrecord", [clips["one"]]) == tmp_path / "x.tfrecord"


def test_capped_videos_are_counted(tmp_path, clips, loads):
    summary = job.extract([clips["three"], clips["one"]], tmp_path / "out.tfrecord", weights="random", max_frames=2)
    assert summary.videos == 2 and summary.capped == 1 and summary.frames == 3
    assert summary.audio_missing == 1 and summary.ok


def test_bad_files_are_reported_before_models_load(tmp_path, clips, loads):
    events: list = []

    def progress(event) -> None:
        if isinstance(event, job.JobMessage) and event.level == job.ERROR:
            events.append(("error", len(loads)))
        elif isinstance(event, job.JobStarted):
            events.append(("started", event.videos))

    bad = _bad(tmp_path / "bad")
    summary = job.extract([*bad, clips["one"]], tmp_path / "mixed.tfrecord", progress=progress, weights="random")
    assert events == [("error", 0), ("error", 0), ("started", 1)]  # both errors came before any model load
    assert summary.failed == 2 and summary.videos == 1 and not summary.ok
    assert all(str(path) in " ".join(summary.errors) for path in bad)
    assert {v.video_id for v in records.read_records(str(tmp_path / "mixed.tfrecord"))} == {"one"}


def test_nothing_left_loads_no_model_and_writes_nothing(tmp_path, clips, loads):
    bad = _bad(tmp_path / "bad")
    out = tmp_path / "none.tfrecord"
    summary = job.extract(bad, out, weights="random")
    assert loads == [] and not summary.models_loaded
    assert summary.written == [] and summary.failed == 2 and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".none")]  # no hidden leftovers either
    # an existing good output stays as it was after a run where every file failed
    good = job.extract([clips["one"]], out, weights="random")
    before = out.read_bytes()
    summary = job.extract(bad, out, weights="random", overwrite=True)
    assert summary.written == [] and out.read_bytes() == before and len(good.written) == 1


def test_options_are_checked_first_with_parameter_names(tmp_path, clips, loads):
    out = tmp_path / "x.tfrecord"
    with pytest.raises(Yt8mError, match="batch_size must be >= 1"):
        job.extract([clips["one"]], out, weights="random", batch_size=0)
    with pytest.raises(Yt8mError, match="fps must be a finite number"):
        job.extract([clips["one"]], out, weights="random", fps=float("inf"))
    with pytest.raises(Yt8mError, match="unknown extract option"):
        job.extract([clips["one"]], out, weights="random", frames_per_second=2)
    with pytest.raises(Yt8mError, match="unknown weights"):
        job.extract([clips["one"]], out, weights="imagenet")
    with pytest.raises(Yt8mError, match="overwrite=True or resume=True"):
        job.extract([clips["one"]], out, weights="random", overwrite=True, resume=True)
    assert loads == [] and not out.exists()


def test_options_object_and_keyword_overrides(tmp_path, clips, loads):
    options = job.ExtractOptions(weights="random", max_frames=1, no_audio=True)
    summary = job.extract(str(clips["three"]), tmp_path / "o.tfrecord", options, max_frames=2)
    assert summary.frames == 2 and loads[-1]["audio"] is False
    video = next(iter(records.read_records(str(tmp_path / "o.tfrecord"))))
    assert video.extras["audio"] == "disabled" and np.all(video.audio == 127)
    assert options.max_frames == 1  # the caller's options are not changed


def test_ids_a_record_cannot_hold_and_audio_only_files_fail_alone(tmp_path, clips, loads):
    odd = tmp_path / "in" / "a,b.mp4"  # a comma would break the Kaggle CSV
    odd.parent.mkdir()
    odd.write_bytes(clips["one"].read_bytes())
    sound = media_cases.write_audio_only(tmp_path / "in" / "sound.ogg")
    summary = job.extract([odd, sound, clips["one"]], tmp_path / "ids.tfrecord", weights="random")
    assert summary.failed == 2 and summary.videos == 1
    assert any("a,b" in e and "comma" in e for e in summary.errors)
    assert any("sound.ogg" in e and "no video stream" in e for e in summary.errors)


def test_damaged_audio_warns_naming_the_file(tmp_path, loads):
    damaged = media_cases.write_av_file(
        tmp_path / "damaged.avi", damage_audio=lambda packets: media_cases.garbage_packet(packets, len(packets) // 2)
    )[0]
    messages: list = []
    summary = job.extract([damaged], tmp_path / "d.tfrecord", weights="random", progress=messages.append)
    assert summary.videos == 1 and summary.ok
    warnings = [m.text for m in messages if isinstance(m, job.JobMessage) and m.level == job.WARNING]
    assert any("damaged.avi" in text and "audio" in text for text in warnings)
    assert any("damaged.avi" in text for text in summary.warnings)


def test_resume_with_nothing_left_keeps_the_output(tmp_path, clips, loads):
    out = tmp_path / "r.tfrecord"
    first = job.extract([clips["one"]], out, weights="random")
    before = out.read_bytes()
    again = job.extract([clips["one"]], out, weights="random", resume=True)
    assert again.skipped == 1 and again.videos == 0 and again.written == first.written
    assert out.read_bytes() == before and len(loads) == 1  # no model was loaded the second time


def test_resume_with_nothing_left_finishes_a_killed_sharded_run(tmp_path, clips, loads):
    """A killed run leaves hidden complete shards; a resume with nothing new makes them final."""
    single = job.extract([clips["one"]], tmp_path / "single.tfrecord", weights="random").written[0]
    out = tmp_path / "sharded" / "out.tfrecord"
    out.parent.mkdir()
    single.rename(shards.part_name(out, 0, shards.COMPLETE))  # what kill -9 after the first shard leaves
    assert job.resolve_output(out, [clips["one"]]) == out and not list(out.parent.glob("out-*"))
    loads.clear()
    summary = job.extract([clips["one"]], out, weights="random", shard_size=1, resume=True)
    assert summary.skipped == 1 and summary.videos == 0 and not loads  # nothing extracted, no model loaded
    final = out.parent / "out-00000-of-00001.tfrecord"
    assert summary.written == [final]
    assert [v.video_id for v in records.read_records(str(final))] == ["one"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no hidden part, no lock


def test_labels_a_record_cannot_hold_fail_that_file_alone(tmp_path, clips, loads):
    labels = tmp_path / "labels.csv"
    labels.write_text(f"three,{2**40}\none,5\n")  # 2**40: beyond what a model's int32 one-hot can index
    summary = job.extract([clips["three"], clips["one"]], tmp_path / "l.tfrecord", weights="random",
                          labels=labels, max_frames=1)
    assert summary.failed == 1 and summary.videos == 1
    assert "three.mp4" in summary.errors[0] and "out of range" in summary.errors[0]
    assert {v.video_id: v.labels for v in records.read_records(str(tmp_path / "l.tfrecord"))} == {"one": [5]}


def test_folder_scan_counts_skipped_files_by_extension(tmp_path, clips, loads):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clips["one"].read_bytes())
    for name in ("a.txt", "b.txt", "cover.jpg", "README"):
        (folder / name).write_text("x")
    summary = job.extract([folder], tmp_path / "m.tfrecord", weights="random")
    assert summary.videos == 1
    assert summary.skipped_by_extension == {".txt": 2, ".jpg": 1, "": 1}


def test_a_beam_runner_is_refused_with_the_function_that_runs_it(tmp_path, clips, loads):
    with pytest.raises(Yt8mError, match=r"yt8m\.extractor\.beam\.extract"):
        job.extract([clips["one"]], tmp_path / "b.tfrecord", weights="random", runner="DirectRunner")
    assert not loads and not (tmp_path / "b.tfrecord").exists()
