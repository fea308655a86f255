"""Benchmark: `yt8m extract --runner DirectRunner` against the in-process `yt8m extract`.

Both commands run as a user runs them (a fresh process each: imports, model loading, extraction,
writing) on the same generated clips with random weights; the wall time of each is the best of
`--repeats` runs (alternating, so both see the same machine load), and the ratio Beam / local is
printed (target: <= 1.3), for wall time and for CPU time (user + system of the command's process,
less sensitive to other work on a shared machine). The records of the two runs are compared id by id: as bytes, and as
protos with their map fields in a fixed order (two processes may order them differently).

    .venv/bin/python bench/extract_beam.py --videos 8 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from yt8m.extractor.synthetic import MOTIONS, write_test_video  # noqa: E402

TARGET_RATIO = 1.3
CLI = "from yt8m.app.cli import entry; entry()"


def _make_clips(folder: Path, videos: int, seconds: float, size: tuple[int, int]) -> None:
    for number in range(videos):
        write_test_video(folder / f"clip{number:03d}.mp4", seconds, size=size, fps=30.0,
                         audio="sine" if number % 3 else None, motion=MOTIONS[number % len(MOTIONS)])


def _run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the command's process) of one `yt8m` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"yt8m {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _records(pattern: str) -> dict[str, bytes]:
    from yt8m.data.records import iterate_raw_records, parse_record

    found: dict[str, bytes] = {}
    for path in sorted(Path(pattern).parent.glob(Path(pattern).name)):
        for index, data in enumerate(iterate_raw_records(str(path))):
            found[parse_record(data, source=str(path), index=index).video_id] = data
    return found


def _canonical(data: bytes) -> bytes:
    """The record re-serialized with map fields in a fixed order (protobuf's own order varies by process)."""
    import tensorflow as tf

    return tf.train.SequenceExample.FromString(data).SerializeToString(deterministic=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="generated clips")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each clip")
    parser.add_argument("--size", default="320x240", help="frame size WxH")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command; the best counts")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="yt8m-bench-beam-") as scratch:
        root = Path(scratch)
        clips = root / "clips"
        _make_clips(clips, args.videos, args.seconds, (width, height))
        common = ["--weights", "random", "--batch-size", str(args.batch_size)]
        local_times, beam_times = [], []
        for repeat in range(args.repeats):
            local_times.append(_run(["extract", str(clips), "-o", str(root / f"local{repeat}.tfrecord"), *common]))
            beam_times.append(_run(["extract", str(clips), "-o", str(root / f"beam{repeat}.tfrecord"), *common,
                                    "--runner", "DirectRunner"]))
        local = _records(str(root / "local0.tfrecord"))
        beam = _records(str(root / "beam0-*-of-*.tfrecord"))
        same_ids = sorted(local) == sorted(beam)
        same_bytes = sum(local[key] == beam.get(key) for key in local)
        same_content = sum(_canonical(local[key]) == _canonical(beam[key]) for key in local if key in beam)

    frames = args.videos * int(args.seconds)
    best_local, best_beam = min(w for w, _ in local_times), min(w for w, _ in beam_times)
    cpu_local, cpu_beam = min(c for _, c in local_times), min(c for _, c in beam_times)
    ratio = best_beam / best_local
    print(f"{args.videos} clips x {args.seconds:g} s ({args.size}, 30 fps), {frames} frames, random weights, "
          f"batch {args.batch_size}, best of {args.repeats}; whole commands (start-up and model loading included)")
    runs = lambda times: ", ".join(f"{wall:.1f}" for wall, _ in times)  # noqa: E731
    print(f"  yt8m extract (in process)          wall {best_local:6.1f} s (runs {runs(local_times)}), CPU {cpu_local:6.1f} s")
    print(f"  yt8m extract --runner DirectRunner wall {best_beam:6.1f} s (runs {runs(beam_times)}), CPU {cpu_beam:6.1f} s")
    print(f"  ratio Beam / in-process: wall {ratio:.2f} x (target <= {TARGET_RATIO}), CPU {cpu_beam / cpu_local:.2f} x")
    print(f"  records id by id: same ids {'yes' if same_ids else 'NO'}; byte-identical {same_bytes}/{len(local)}; "
          f"identical protos (fields in canonical order) {same_content}/{len(local)}")


if __name__ == "__main__":
    main()
