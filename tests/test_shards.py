"""Shard writing as an operator meets it: kills at fixed points, two runs on one output, a full disk,
an existing output, resumes with another layout, leftovers of crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from yt8m.app.flags import cli_message
from yt8m.core import VideoFeatures, Yt8mError
from yt8m.data import records, shards

IDS = [f"v{i:02d}" for i in range(10)]


def video(video_id: str, frames: int = 2) -> VideoFeatures:
    rng = np.random.default_rng(abs(hash(video_id)) % 1000)
    return VideoFeatures(
        video_id=video_id,
        rgb=rng.integers(0, 256, (frames, 1024), dtype=np.uint8),
        audio=rng.integers(0, 256, (frames, 128), dtype=np.uint8),
    )


def write(out, ids, **kwargs) -> None:
    with shards.ShardWriter(out, **kwargs) as writer:
        for video_id in ids:
            writer.write(video(video_id))


def visible(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def hidden(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def ids_in(files) -> list[str]:
    """Every id of every file, each file read to its last byte (records.read_records checks that)."""
    return [v.video_id for f in files for v in records.read_records(str(f))]


def assert_output(out, expected_ids, shard_size=None) -> None:
    """The operator's checks after any run: each id once, every file whole, names say the true count."""
    folder = out.parent
    if shard_size is None:
        assert visible(folder) == [out.name]
        assert sorted(ids_in([out])) == sorted(expected_ids)
    else:
        files = sorted(folder.glob(f"{out.stem}-*-of-*{out.suffix}"))
        count = len(files)
        assert [f.name for f in files] == [shards.shard_name(out, i, count).name for i in range(count)]
        assert sorted(ids_in(files)) == sorted(expected_ids)
        assert len(ids_in(files)) == len(expected_ids)  # no id twice
        assert not out.exists()
    assert [name for name in hidden(folder) if name.startswith(f".{out.name}")] == []  # no lock, no parts


def resume(out, ids, shard_size=None) -> list:
    done = shards.existing_ids(out)
    with shards.ShardWriter(out, shard_size=shard_size, resume=True) as writer:
        for video_id in ids:
            if video_id not in done:
                writer.write(video(video_id))
    return sorted(done)


# ----------------------------------------------------------------------------- basics


def test_single_file_is_hidden_until_complete_and_locked_meanwhile(tmp_path):
    out = tmp_path / "out.tfrecord"
    writer = shards.ShardWriter(out)
    writer.write(video("a"))
    assert not out.exists()
    assert hidden(tmp_path) == [".out.tfrecord.lock", ".out.tfrecord.part-00000.inprogress"]
    lock = json.loads((tmp_path / ".out.tfrecord.lock").read_text())
    assert lock["pid"] == os.getpid() and lock["host"] and lock["started"]
    assert writer.close() == [out]
    assert_output(out, ["a"])


def test_shards_get_final_names_and_hold_every_record(tmp_path):
    out = tmp_path / "out.tfrecord"
    with shards.ShardWriter(out, shard_size=2) as writer:
        for video_id in IDS[:5]:
            writer.write(video(video_id))
    assert visible(tmp_path) == [f"out-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert_output(out, IDS[:5], shard_size=2)
    assert shards.existing_ids(out) == set(IDS[:5])


def test_interrupt_keeps_complete_records_and_resume_finishes(tmp_path):
    out = tmp_path / "out.tfrecord"
    with pytest.raises(KeyboardInterrupt):
        with shards.ShardWriter(out, shard_size=2) as writer:
            for i, video_id in enumerate(IDS[:5]):
                writer.write(video(video_id))
                if i == 2:
                    raise KeyboardInterrupt
    assert visible(tmp_path) == []  # nothing final yet
    assert shards.existing_ids(out) == set(IDS[:3])  # the third record of the cut shard is kept too
    assert resume(out, IDS[:5], shard_size=2) == IDS[:3]
    assert_output(out, IDS[:5], shard_size=2)
    assert len(visible(tmp_path)) == 3  # 2 + 2 + 1: records carried over fill the shards


def test_resume_of_single_file_copies_forward(tmp_path):
    out = tmp_path / "out.tfrecord"
    write(out, ["a"])
    resume(out, ["a", "b"])
    assert [v.video_id for v in records.read_records(out)] == ["a", "b"]
    assert_output(out, ["a", "b"])


# ----------------------------------------------------------------------------- group 1: good output is never destroyed


@pytest.mark.parametrize("shard_size", [None, 2])
def test_existing_output_is_refused_before_any_work(tmp_path, shard_size):
    out = tmp_path / "out.tfrecord"
    write(out, IDS[:4], shard_size=shard_size)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for size in (None, 2, 3):
        with pytest.raises(Yt8mError) as error:
            shards.check_output(out, size)
        assert str(out) in str(error.value)
        assert "`overwrite=True`" in str(error.value) and "`resume=True`" in str(error.value)
        assert "--overwrite" in cli_message(str(error.value)) and "--resume" in cli_message(str(error.value))
        with pytest.raises(Yt8mError, match="overwrite"):
            shards.ShardWriter(out, shard_size=size)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_hidden_parts_of_an_interrupted_run_count_as_output(tmp_path):
    out = tmp_path / "out.tfrecord"
    with pytest.raises(KeyboardInterrupt):
        with shards.ShardWriter(out) as writer:
            writer.write(video("a"))
            raise KeyboardInterrupt
    with pytest.raises(Yt8mError, match="hidden part file.*interrupted run.*`resume=True`"):
        shards.check_output(out)


@pytest.mark.parametrize("shard_size", [None, 2])
def test_a_run_that_writes_nothing_changes_nothing(tmp_path, shard_size):
    out = tmp_path / "out.tfrecord"
    write(out, IDS[:6], shard_size=shard_size)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with shards.ShardWriter(out, shard_size=shard_size, overwrite=True) as writer:
        pass  # every input failed
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    fresh = tmp_path / "fresh" / "new.tfrecord"
    writer = shards.ShardWriter(fresh, shard_size=shard_size)
    assert writer.close() == [] and not fresh.parent.exists()


@pytest.mark.parametrize("shard_size", [None, 2])
def test_overwrite_replaces_only_when_the_run_completes(tmp_path, shard_size):
    out = tmp_path / "out.tfrecord"
    write(out, IDS[:6], shard_size=shard_size)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(RuntimeError):
        with shards.ShardWriter(out, shard_size=shard_size, overwrite=True) as writer:
            writer.write(video("new0"))
            assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith(".")} == {
                name: data for name, data in before.items()}
            raise RuntimeError("the run failed")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith(".")} == before
    # a resume continues the interrupted overwrite: the old records are not mixed in
    assert resume(out, ["new0", "new1", "new2"], shard_size=shard_size) == ["new0"]
    assert_output(out, ["new0", "new1", "new2"], shard_size=shard_size)


def test_overwrite_from_shards_to_a_single_file(tmp_path):
    out = tmp_path / "out.tfrecord"
    write(out, IDS[:5], shard_size=2)
    write(out, ["x"], overwrite=True)
    assert_output(out, ["x"])


def test_unusable_output_paths_are_one_line(tmp_path):
    (tmp_path / "folder.tfrecord").mkdir()
    with pytest.raises(Yt8mError, match="folder.tfrecord: is a folder"):
        shards.check_output(tmp_path / "folder.tfrecord")
    (tmp_path / "file").write_text("x")
    with pytest.raises(Yt8mError, match="cannot be written: .*file is not a folder"):
        shards.check_output(tmp_path / "file" / "sub" / "out.tfrecord")
    with pytest.raises(Yt8mError, match="not both"):
        shards.check_output(tmp_path / "o.tfrecord", overwrite=True, resume=True)


# ----------------------------------------------------------------------------- group 1: one run per output


def test_second_writer_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "out.tfrecord"
    first = shards.ShardWriter(out)
    first.write(video("a"))
    with pytest.raises(Yt8mError, match=rf"another run is writing it \(pid {os.getpid()} on "):
        shards.check_output(out)
    with pytest.raises(Yt8mError, match="another run is writing it"):
        shards.ShardWriter(out, resume=True)
    first.close()
    assert_output(out, ["a"])


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "out.tfrecord"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    lock = shards.lock_path(out)
    import socket
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "earlier"}))
    shards.check_output(out)
    write(out, ["a"])
    assert_output(out, ["a"])


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from yt8m.core import VideoFeatures
    from yt8m.data import shards
    out, shard_size, ids = sys.argv[1], int(sys.argv[2]) or None, sys.argv[3].split(",")
    resume = len(sys.argv) > 4 and sys.argv[4] == "resume"
    hold = len(sys.argv) > 4 and sys.argv[4] == "hold"
    done = shards.existing_ids(out) if resume else set()
    def video(i):
        rng = np.random.default_rng(abs(hash(i)) % 1000)
        return VideoFeatures(i, rng.integers(0, 256, (2, 1024), dtype=np.uint8), rng.integers(0, 256, (2, 128), dtype=np.uint8))
    with shards.ShardWriter(out, shard_size=shard_size, resume=resume) as writer:
        for i in ids:
            if i not in done:
                writer.write(video(i))
        if hold:
            print("holding", flush=True)
            time.sleep(60)
    print("done", flush=True)
    """
)


def child(out, shard_size, ids, *extra, env=None, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), str(shard_size or 0), ",".join(ids), *extra],
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def test_two_processes_on_one_output(tmp_path):
    out = tmp_path / "out.tfrecord"
    first = child(out, 2, IDS[:3], "hold")
    try:
        assert first.stdout.readline().strip() == "holding"
        second = child(out, 2, IDS[3:])
        _, err = second.communicate(timeout=120)
        assert second.returncode != 0
        assert f"another run is writing it (pid {first.pid} on" in err
    finally:
        first.kill()
        first.wait()
    # the holder was killed (-9): its lock is stale, its complete records are resumable
    assert resume(out, IDS, shard_size=2)
    assert_output(out, IDS, shard_size=2)


# ----------------------------------------------------------------------------- group 2: kill -9 at fixed points, then resume


@pytest.mark.slow
@pytest.mark.parametrize(
    "shard_size, fault",
    [
        (None, "record:4"),  # single file killed while writing: its complete records survive
        (3, "record:5"),  # inside the second shard
        (3, "finish-part:2"),  # a shard flushed but not yet marked complete
        (3, "close-staged"),  # close: between the two rename phases
        (3, "close-renamed:2"),  # close: some shards final, some not
    ],
)
def test_kill_at_fixed_points_then_resume(tmp_path, shard_size, fault):
    out = tmp_path / "out.tfrecord"
    run = child(out, shard_size, IDS, env={shards.FAULT_ENV: fault})
    run.communicate(timeout=120)
    assert run.returncode == shards.FAULT_EXIT_CODE
    assert shards.lock_path(out).exists()  # killed: the lock is left behind, stale
    with pytest.raises(Yt8mError):
        shards.check_output(out, shard_size)  # something exists: no silent restart
    resume(out, IDS, shard_size=shard_size)
    assert_output(out, IDS, shard_size=shard_size)


@pytest.mark.slow
def test_kill_during_a_resume_then_resume_again(tmp_path):
    out = tmp_path / "out.tfrecord"
    write(out, IDS[:4], shard_size=3)
    run = child(out, 3, IDS, "resume", env={shards.FAULT_ENV: "close-staged"})
    run.communicate(timeout=120)
    assert run.returncode == shards.FAULT_EXIT_CODE
    resume(out, IDS, shard_size=3)
    assert_output(out, IDS, shard_size=3)


def test_killed_single_file_keeps_its_complete_records(tmp_path):
    """A partial file cut in the middle of a record (what kill -9 leaves) is continued by resume."""
    out = tmp_path / "out.tfrecord"
    full = tmp_path / "full.tfrecord"
    write(full, IDS[:5])
    data = full.read_bytes()
    full.unlink()
    partial = shards.part_name(out, 0, shards.IN_PROGRESS)
    partial.write_bytes(data[: len(data) - 100])  # the fifth record is cut
    assert shards.existing_ids(out) == set(IDS[:4])
    assert resume(out, IDS[:7]) == IDS[:4]
    assert_output(out, IDS[:7])


# ----------------------------------------------------------------------------- group 2: wrong data sets refused or repaired


def test_old_final_shards_plus_hidden_shards_never_duplicate_ids(tmp_path):
    """The issue's case: final shards of a finished run plus hidden shards of another run with the same ids."""
    out = tmp_path / "out.tfrecord"
    write(out, IDS[:8], shard_size=2)
    other = tmp_path / "other" / "out.tfrecord"
    with pytest.raises(KeyboardInterrupt):
        with shards.ShardWriter(other, shard_size=2) as writer:
            for video_id in IDS[:4]:
                writer.write(video(video_id))
            raise KeyboardInterrupt
    for part in other.parent.iterdir():
        if ".part-" in part.name:
            part.rename(tmp_path / part.name.replace("part-0000", "part-0010"))
    assert resume(out, IDS, shard_size=2) == IDS[:8]
    assert_output(out, IDS, shard_size=2)


def test_resume_with_another_layout_is_refused(tmp_path):
    sharded = tmp_path / "sharded.tfrecord"
    write(sharded, IDS[:5], shard_size=2)
    with pytest.raises(Yt8mError, match=r"wrote shards .*`shard_size` 2"):
        shards.check_output(sharded, None, resume=True)
    single = tmp_path / "one" / "single.tfrecord"
    write(single, IDS[:5])
    with pytest.raises(Yt8mError, match="wrote a single file; resume it without `shard_size`"):
        shards.ShardWriter(single, shard_size=2, resume=True)
    assert_output(single, IDS[:5])


def test_resume_with_another_shard_size_keeps_old_shards(tmp_path):
    out = tmp_path / "out.tfrecord"
    write(out, IDS[:4], shard_size=2)
    resume(out, IDS, shard_size=4)
    assert_output(out, IDS, shard_size=4)
    assert [records.count_records(p) for p in sorted(tmp_path.glob("out-*"))] == [2, 2, 4, 2]


def test_legacy_renaming_leftovers_are_recovered(tmp_path):
    """An earlier version crashed while re-staging: `.renaming` and `.complete` files next to finals."""
    out = tmp_path / "out.tfrecord"
    write(out, IDS[:6], shard_size=2)
    finals = sorted(tmp_path.glob("out-*"))
    finals[0].rename(tmp_path / ".out-00000.renaming")
    finals[1].rename(tmp_path / ".out-00001.complete")
    assert shards.existing_ids(out) == set(IDS[:6])
    resume(out, IDS, shard_size=2)
    assert_output(out, IDS, shard_size=2)


def test_resume_with_nothing_new_finishes_hidden_parts(tmp_path):
    out = tmp_path / "out.tfrecord"
    run = child(out, 2, IDS[:4], env={shards.FAULT_ENV: "close-discarded"})
    run.communicate(timeout=120)
    assert visible(tmp_path) == []
    resume(out, IDS[:4], shard_size=2)  # every id is done already
    assert_output(out, IDS[:4], shard_size=2)


# ----------------------------------------------------------------------------- full disk


def test_full_disk_is_one_line_and_resumable(tmp_path, monkeypatch):
    out = tmp_path / "out.tfrecord"
    monkeypatch.setenv(shards.FAULT_ENV, "enospc:4")
    monkeypatch.setattr(shards, "_fault_counts", {})
    with pytest.raises(Yt8mError) as error:
        write(out, IDS, shard_size=2)
    message = str(error.value)
    assert "\n" not in message and "no space left on device" in message and "`resume=True`" in message
    assert not shards.lock_path(out).exists()
    monkeypatch.delenv(shards.FAULT_ENV)
    assert resume(out, IDS, shard_size=2) == IDS[:3]
    assert_output(out, IDS, shard_size=2)


# ----------------------------------------------------------------------------- signals


@pytest.mark.slow
def test_sigterm_stops_a_cli_run_like_ctrl_c(tmp_path):
    """`kill PID` (SIGTERM) during a CLI run: one line, exit 143, complete records kept, lock released."""
    import signal
    import time

    out = tmp_path / "synth.tfrecord"
    script = "import sys; from yt8m.app.cli import main; sys.exit(main(sys.argv[1:]))"
    run = subprocess.Popen(
        [sys.executable, "-c", script, "synth", "-o", str(out), "--videos", "200000", "--frames", "2",
         "--feature-sizes", "8,4", "--classes", "3", "--shard-size", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".synth.tfrecord.part-00001.*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert not shards.lock_path(out).exists()
    assert list(tmp_path.glob(".synth.tfrecord.part-00000.complete"))  # complete shards kept for a resume


@pytest.fixture
def small_disk(tmp_path):
    """A 200 KB tmpfs (needs root and mount rights; skipped elsewhere, the injected ENOSPC test remains)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_really_full_disk_then_resume_after_freeing_space(small_disk):
    out = small_disk / "out.tfrecord"
    ids = [f"v{i:02d}" for i in range(40)]  # ~11.5 KB each with 10 frames: about 17 fit
    with pytest.raises(Yt8mError, match="no space left on device"):
        with shards.ShardWriter(out, shard_size=3) as writer:
            for video_id in ids:
                writer.write(video(video_id, frames=10))
    kept = shards.existing_ids(out)
    assert 3 <= len(kept) < 40
    subprocess.run(["mount", "-o", "remount,size=2m", str(small_disk)], check=True)
    done = shards.existing_ids(out)
    with shards.ShardWriter(out, shard_size=3, resume=True) as writer:
        for video_id in ids:
            if video_id not in done:
                writer.write(video(video_id, frames=10))
    assert_output(out, ids, shard_size=3)
