"""Benchmark of `yt8m extract` (random weights): stage rates, the full path, the official method.

Prints, in one run on the same machine and the same generated videos:

(a) frames/s of each stage alone (each measurement is the best of `--repeats` runs): decode (sampled frames out of every decoded frame), audio
    front end (decode + resample + log-mel, one example per frame), Inception, VGGish, PCA +
    quantization, and serializing + writing records;
(b) frames/s of the full extraction path (FeatureExtractor + ShardWriter, what `yt8m extract`
    runs, with audio), and its time relative to the sum of the isolated stage costs;
(c) frames/s of the official method re-enacted: read (decode and convert) every frame with
    OpenCV, the old extractor's frame rule, Inception on one frame at a time, PCA + quantization,
    no audio;

then the ratio (b) / (c). `--bf16` adds the full path in bfloat16 and how many quantized bytes
agree with float32 within one step. `--memory` measures the peak RSS of extracting a short and a
long video (each in its own process, `--max-frames 0`).

`--whole` measures what a user waits for, as whole processes (runs alternated, the best of
`--repeats` counts): `yt8m extract CLIP --weights random` of a 60 s clip (rgb + audio) against the
official method re-enacted as a whole process (import, load, every frame read, batch-1 Inception,
rgb only); the start-up from process start to the first frame entering a network, by stage, for
`--weights random` (cold: empty cache dir, and warm) and for the official formats (a full-size
2015-format Inception graph and VGGish checkpoint written by `yt8m.extractor.synthetic_models`); and the
peak RSS of extracting a 7680x4320 clip and a 320x240 clip (the process's peak, model loading
included, and the highest RSS while extracting; `--frame-sizes` runs only this part).

    .venv/bin/python bench/extract.py --seconds 60 --videos 2 --batch-size 32 --bf16 --memory
    .venv/bin/python bench/extract.py --whole --skip-speed
    .venv/bin/python bench/extract.py --frame-sizes --skip-speed
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from yt8m.extractor import audio as audio_lib  # noqa: E402
from yt8m.extractor import video as video_lib  # noqa: E402
from yt8m.extractor.synthetic import write_test_video  # noqa: E402

KIB = 1024


def _size(text: str) -> tuple[int, int]:
    width, height = (int(part) for part in text.lower().split("x"))
    return width, height


def _load(precision: str = "float32"):
    from yt8m._tf import import_tensorflow_quietly
    from yt8m.extractor.backbones import load_feature_models

    import_tensorflow_quietly()
    return load_feature_models(weights="random", precision=precision)


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def make_videos(folder: Path, count: int, seconds: float, size: tuple[int, int], fps: float) -> list[Path]:
    motions = ("right", "circle", "down", "pulse")
    return [
        write_test_video(folder / f"bench_{i}.mp4", seconds, fps=fps, size=size, motion=motions[i % 4],
                         audio="sine", tone_hz=300.0 + 150 * i, noise=3.0, seed=i)
        for i in range(count)
    ]


def best_stage_rates(models, videos: list[Path], batch_size: int, max_frames: int, repeats: int):
    """Each stage's best rate over `repeats` runs (the machine may be shared: noise only slows)."""
    best: dict[str, float] = {}
    frames = 0
    for _ in range(repeats):
        rates, frames = stage_rates(models, videos, batch_size, max_frames)
        for name, rate in rates.items():
            best[name] = max(best.get(name, 0.0), rate)
    return best, frames


def stage_rates(models, videos: list[Path], batch_size: int, max_frames: int) -> tuple[dict[str, float], int]:
    """Frames/s of each stage alone on the given videos; returns (rates, frames)."""
    from yt8m.data.shards import ShardWriter
    from yt8m.core import VideoFeatures
    from yt8m.pca.quantization import quantize

    rates: dict[str, float] = {}
    images: list[np.ndarray] = []
    started = time.perf_counter()
    for path in videos:
        images.extend(frame.image for frame in video_lib.iter_frames(path, max_frames=max_frames))
    rates["decode"] = _rate(len(images), time.perf_counter() - started)
    frames = len(images)

    examples: list[np.ndarray] = []
    started = time.perf_counter()
    for path in videos:
        for count, example in enumerate(audio_lib.iter_audio_examples(path), start=1):
            examples.append(example)
            if max_frames and count >= max_frames:
                break
    rates["audio front end"] = _rate(len(examples), time.perf_counter() - started)

    started = time.perf_counter()
    embeddings = [models.inception(np.stack(images[i : i + batch_size])) for i in range(0, frames, batch_size)]
    rates["inception"] = _rate(frames, time.perf_counter() - started)

    started = time.perf_counter()
    audio_embeddings = [models.vggish(np.stack(examples[i : i + batch_size])) for i in range(0, len(examples), batch_size)]
    rates["vggish"] = _rate(len(examples), time.perf_counter() - started)

    started = time.perf_counter()
    rgb = [quantize(models.rgb_pca.apply(batch)) for batch in embeddings]
    sound = [quantize(models.audio_pca.apply(batch)) for batch in audio_embeddings]
    rates["pca + quantize"] = _rate(frames, time.perf_counter() - started)

    rgb_rows = np.concatenate(rgb)
    audio_rows = np.concatenate(sound)[: len(rgb_rows)]
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        with ShardWriter(Path(scratch) / "stage.tfrecord", overwrite=True) as writer:
            per_video = max(1, len(rgb_rows) // len(videos))
            for index, start in enumerate(range(0, len(rgb_rows), per_video)):
                writer.write(VideoFeatures(
                    f"v{index}", rgb_rows[start : start + per_video], audio_rows[start : start + per_video],
                    mean_rgb=np.zeros(1024, np.float32), mean_audio=np.zeros(128, np.float32),
                ))
        rates["write"] = _rate(len(rgb_rows), time.perf_counter() - started)
    return rates, frames


def full_path(models, videos: list[Path], batch_size: int, workers: int, max_frames: int, out: Path):
    """The extract command's path: FeatureExtractor + ShardWriter. Returns (frames/s, frames, results)."""
    from yt8m.data.shards import ShardWriter
    from yt8m.extractor.pipeline import FeatureExtractor, VideoInput

    extractor = FeatureExtractor(models, batch_size=batch_size, workers=workers, max_frames=max_frames)
    items = [VideoInput(path, path.stem) for path in videos]
    results = {}
    started = time.perf_counter()
    with ShardWriter(out, overwrite=True) as writer:
        for result in extractor.extract(items):
            if not result.ok:
                raise SystemExit(result.error)
            writer.write(result.features)
            results[result.input.video_id] = result.features
    seconds = time.perf_counter() - started
    frames = sum(features.num_frames for features in results.values())
    return _rate(frames, seconds), frames, results, extractor.stats


def _batch_of_one(network, frame: np.ndarray) -> np.ndarray:
    """The network on ONE frame, as the old extractor ran it (`Backbone.__call__` pads a lone
    frame to a batch of two for batch-independent floats, which would double this method's cost)."""
    from yt8m._tf import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    return np.asarray(network.network(tf.convert_to_tensor(network.prepare(frame)[None])))


def official_method(models, videos: list[Path], max_frames: int, out: Path) -> tuple[float, int]:
    """Re-enacts the old extractor: read() every frame, its frame rule, batch-1 Inception, no audio."""
    import cv2

    from yt8m.data.shards import ShardWriter
    from yt8m.core import VideoFeatures
    from yt8m.pca.quantization import NEUTRAL_BYTE

    frames = 0
    started = time.perf_counter()
    with ShardWriter(out, overwrite=True) as writer:
        for path in videos:
            capture = cv2.VideoCapture(str(path))
            rule = video_lib._LegacyRule(1.0)
            rows = []
            while not max_frames or len(rows) < max_frames:
                ok, bgr = capture.read()  # decode AND convert every frame, as the old loop does
                if not ok:
                    break
                if not rule.takes(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0):
                    continue
                rgb = bgr[:, :, ::-1]
                features = _batch_of_one(models.inception, np.ascontiguousarray(rgb))
                rows.append(models.rgb_pca.apply_and_quantize(features)[0])
            capture.release()
            rgb_rows = np.stack(rows)
            writer.write(VideoFeatures(path.stem, rgb_rows, np.full((len(rows), 128), NEUTRAL_BYTE, np.uint8)))
            frames += len(rows)
    return _rate(frames, time.perf_counter() - started), frames


def agreement(a: dict, b: dict) -> dict[str, float]:
    """Share of quantized bytes of two extractions that differ by at most one step."""
    out = {}
    for field in ("rgb", "audio"):
        left = np.concatenate([getattr(a[k], field) for k in sorted(a)]).astype(int)
        right = np.concatenate([getattr(b[k], field) for k in sorted(b)]).astype(int)
        out[field] = float((np.abs(left - right) <= 1).mean())
    return out


def _current_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def memory_child(path: str, batch_size: int, max_frames: int) -> None:
    """Run in a subprocess: extract one video; print memory figures (KiB) and frames as JSON.

    `peak_kib` is the process's peak RSS (ru_maxrss, model loading included), `load_peak_kib` the
    peak when loading was done; `extract_peak_kib` the highest current RSS sampled every 20 ms
    while extracting, `after_load_kib` the RSS before it.
    """
    import gc
    import threading

    models = _load()
    from yt8m.extractor.pipeline import FeatureExtractor

    gc.collect()
    load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    after_load = _current_rss_kib()
    highest = [after_load]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            highest[0] = max(highest[0], _current_rss_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    features = FeatureExtractor(models, batch_size=batch_size, max_frames=max_frames).extract_file(path)
    done.set()
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_kib": peak, "load_peak_kib": load_peak, "after_load_kib": after_load,
                      "extract_peak_kib": highest[0], "frames": features.num_frames}))


def memory_runs(folder: Path, minutes: list[float], batch_size: int) -> list[dict]:
    results = []
    for length in minutes:
        path = write_test_video(folder / f"memory_{length:g}min.mp4", length * 60, fps=5, size=(64, 48),
                                motion="circle", audio="sine")
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(path), "--batch-size", str(batch_size)],
            capture_output=True, text=True, check=True,
        )
        report = json.loads(completed.stdout.strip().splitlines()[-1])
        report.update(minutes=length, seconds=time.perf_counter() - started)
        results.append(report)
    return results


# --------------------------------------------------------------------------- whole processes

# Runs the extract job as `yt8m extract` does, in a fresh interpreter; prints start-up figures.
_STARTUP_CHILD = """
import json, resource, sys, time
spawned = float(sys.argv[1])
entered = time.time()
from yt8m.extractor.job import extract
imported = time.time()
summary = extract([sys.argv[2]], sys.argv[3], overwrite=True, **json.loads(sys.argv[4]))
print(json.dumps({"python start": entered - spawned, "imports": imported - entered,
                  "first input": summary.first_input_time - spawned, "total": time.time() - spawned,
                  "timings": summary.timings, "frames": summary.frames,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

# The official method as a whole process: import, load the network, read every frame, batch-1 Inception.
_OFFICIAL_CHILD = """
import json, sys, time
spawned = float(sys.argv[5])
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import extract as bench
models = bench._load_rgb_only(sys.argv[4])
loaded = time.time()
bench.official_method(models, [Path(sys.argv[1])], 0, Path(sys.argv[2]))
print(json.dumps({"start-up": loaded - spawned, "total": time.time() - spawned}))
"""


def _device() -> str:
    """The device TensorFlow places the networks on: its GPUs when it sees any, else the CPU."""
    from yt8m._tf import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    gpus = tf.config.list_logical_devices("GPU")
    return f"{len(gpus)} GPU(s) ({', '.join(g.name for g in gpus)})" if gpus else f"CPU ({os.cpu_count()} cores)"


def _load_rgb_only(weights: str = "random"):
    """What the old extractor loaded: the frame network and its PCA (no VGGish)."""
    from yt8m._tf import import_tensorflow_quietly
    from yt8m.extractor.backbones import load_feature_models

    import_tensorflow_quietly()
    return load_feature_models(weights=weights, audio=False)


def _timed_process(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])}... failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def startup_run(clip: Path, out: Path, env: dict[str, str], **options) -> dict:
    """One fresh process running the extract job on `clip`; its start-up figures."""
    command = [sys.executable, "-c", _STARTUP_CHILD, repr(time.time()), str(clip), str(out), json.dumps(options)]
    _, stdout = _timed_process(command, env)
    return json.loads(stdout.strip().splitlines()[-1])


def print_startup(title: str, run: dict) -> None:
    print(f"    {title}: first frame into the network {run['first input']:.1f} s after process start "
          f"(whole run {run['total']:.1f} s)", flush=True)
    print(f"        python start {run['python start']:.2f} s, yt8m imports {run['imports']:.2f} s")
    for stage, seconds in run["timings"].items():
        print(f"        {stage:<32} {seconds:6.2f} s")


def whole_process(folder: Path, seconds: float, repeats: int) -> None:
    """`yt8m extract` vs the official method re-enacted, start-up by stage, and peak RSS by frame size."""
    from yt8m.extractor.synthetic_models import write_official_models

    env = dict(os.environ, YT8M_HOME=str(folder / "cache"), TF_CPP_MIN_LOG_LEVEL="3")
    clip = write_test_video(folder / "minute.mp4", seconds, fps=25, size=(320, 240), motion="circle",
                            audio="sine", noise=3.0)
    yt8m = [sys.executable, "-c", "import sys; from yt8m.app.cli import entry; sys.argv[0] = 'yt8m'; entry()"]
    print(f"\n(w) whole processes, {seconds:g} s clip 320x240 at 25 fps, YT8M_HOME={env['YT8M_HOME']}")
    print("\n    start-up, --weights random:", flush=True)
    print_startup("cold (empty cache dir)", startup_run(clip, folder / "cold.tfrecord", env, weights="random"))
    print_startup("warm", startup_run(clip, folder / "warm.tfrecord", env, weights="random"))
    ours, official, pairs = [], [], []
    for _ in range(repeats):  # alternated, so that a busy moment hits both
        ours.append(_timed_process(yt8m + ["extract", str(clip), "-o", str(folder / "cli.tfrecord"), "--weights",
                                           "random", "--overwrite"], env)[0])
        seconds, stdout = _timed_process([sys.executable, "-c", _OFFICIAL_CHILD, str(clip), str(folder / "old.tfrecord"),
                                          str(Path(__file__).parent), "random", repr(time.time())], env)
        official.append(seconds)
        split = json.loads(stdout.strip().splitlines()[-1])
        pairs.append(f"{ours[-1]:.1f} vs {seconds:.1f} s (official start-up {split['start-up']:.1f} s)")
    print(f"    alternated runs, yt8m extract vs official: {'; '.join(pairs)}")
    print(f"    yt8m extract (rgb + audio): best {min(ours):.1f} s; official method re-enacted (rgb only): "
          f"best {min(official):.1f} s")
    print(f"    whole-process ratio (official / ours): {min(official) / min(ours):.2f}x", flush=True)
    models_dir = folder / "official_models"
    write_official_models(models_dir)
    print("\n    start-up, official formats (full-size 2015 graph + VGGish TF1 checkpoint, test-made):")
    for title in ("--weights yt8m, first run (unpacks and prepares)", "--weights yt8m, warm"):
        print_startup(title, startup_run(clip, folder / "official.tfrecord", env, weights="yt8m",
                                         models_dir=str(models_dir)))

    size_peaks(folder, env)


def size_peaks(folder: Path, env: dict[str, str], seconds: float = 1.0) -> None:
    """Peak RSS of extracting a 320x240 and a 7680x4320 clip, each in its own process."""
    print(f"\n    peak RSS by frame size ({seconds:g} s clips at 5 fps, --max-frames 0, one process each, random weights):")
    peaks = {}
    for width, height in ((320, 240), (7680, 4320)):
        big = write_test_video(folder / f"size_{width}x{height}.mp4", seconds, fps=5, size=(width, height), audio="sine")
        _, stdout = _timed_process([sys.executable, __file__, "--memory-child", str(big)], env)
        run = json.loads(stdout.strip().splitlines()[-1])
        peaks[(width, height)] = run
        print(f"        {width}x{height}: process peak {run['peak_kib'] / KIB:.0f} MiB (model loading "
              f"{run['load_peak_kib'] / KIB:.0f} MiB); while extracting at most {run['extract_peak_kib'] / KIB:.0f} MiB, "
              f"{(run['extract_peak_kib'] - run['after_load_kib']) / KIB:+.0f} MiB over the RSS after loading "
              f"({run['frames']} frames)")
    small, large = peaks[(320, 240)], peaks[(7680, 4320)]
    print(f"        ratio 7680x4320 / 320x240: process peak {large['peak_kib'] / small['peak_kib']:.2f}, "
          f"extraction peak {large['extract_peak_kib'] / small['extract_peak_kib']:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each generated video")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--size", type=_size, default=(640, 360), help="WIDTHxHEIGHT of the videos")
    parser.add_argument("--source-fps", type=float, default=30.0, help="frame rate of the generated videos")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-frames", type=int, default=300)
    parser.add_argument("--bf16", action="store_true", help="also run bfloat16 and compare bytes")
    parser.add_argument("--memory", action="store_true", help="peak RSS of short vs long videos")
    parser.add_argument("--memory-minutes", default="1,30", help="video lengths for --memory")
    parser.add_argument("--skip-speed", action="store_true", help="only the --memory / --whole parts")
    parser.add_argument("--whole", action="store_true", help="whole processes: yt8m extract vs the official method")
    parser.add_argument("--frame-sizes", action="store_true",
                        help="only the peak RSS of a 320x240 vs a 7680x4320 clip (part of --whole)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the best counts")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.batch_size, 0)
        return

    with tempfile.TemporaryDirectory(prefix="yt8m-bench-") as scratch:
        folder = Path(scratch)
        print(f"cpu cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.2f}")
        if not args.skip_speed:
            print(f"networks run on: {_device()} (frames/s below are of this device; decoding is on CPU threads)")
            started = time.perf_counter()
            videos = make_videos(folder, args.videos, args.seconds, args.size, args.source_fps)
            print(f"generated {args.videos} x {args.seconds:g} s videos, {args.size[0]}x{args.size[1]} "
                  f"at {args.source_fps:g} fps, in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            models = _load()
            print(f"random models loaded in {time.perf_counter() - started:.1f} s")
            warm = make_videos(folder / "warm", 1, 2.0, args.size, args.source_fps)
            full_path(models, warm, args.batch_size, args.workers, args.max_frames, folder / "warm.tfrecord")
            official_method(models, warm, args.max_frames, folder / "warm_official.tfrecord")

            rates, frames = best_stage_rates(models, videos, args.batch_size, args.max_frames, args.repeats)
            print(f"\n(a) stages alone, batch {args.batch_size}, {frames} frames:")
            for name, rate in rates.items():
                print(f"    {name:<16} {rate:9.1f} frames/s")
            stage_seconds = sum(frames / rate for rate in rates.values())
            print(f"    sum of stage costs: {stage_seconds:.1f} s = {_rate(frames, stage_seconds):.1f} frames/s")

            full_rate, full_frames, fp32, stats = max(
                (full_path(models, videos, args.batch_size, args.workers, args.max_frames, folder / "full.tfrecord")
                 for _ in range(args.repeats)), key=lambda run: run[0])
            full_seconds = full_frames / full_rate
            print(f"\n(b) full path (workers {args.workers}): {full_rate:.1f} frames/s, {full_seconds:.1f} s "
                  f"= {full_seconds / stage_seconds:.2f} x the sum of the stage costs")
            print(f"    inside: inception {stats.inception_seconds:.1f} s, vggish {stats.vggish_seconds:.1f} s, "
                  f"pca {stats.postprocess_seconds:.1f} s, waiting for decode {stats.waiting_seconds:.1f} s")

            official_rate = max(official_method(models, videos, args.max_frames, folder / "official.tfrecord")[0]
                                for _ in range(args.repeats))
            print(f"\n(c) official method re-enacted: {official_rate:.1f} frames/s")
            print(f"\n(b) / (c) = {full_rate / official_rate:.2f}x (float32, (b) also does audio)")

            if args.bf16:
                bf16_models = _load("bfloat16")
                full_path(bf16_models, warm, args.batch_size, args.workers, args.max_frames, folder / "warm16.tfrecord")
                bf16_rate, _, bf16, _ = max(
                    (full_path(bf16_models, videos, args.batch_size, args.workers, args.max_frames, folder / "bf16.tfrecord")
                     for _ in range(args.repeats)), key=lambda run: run[0])
                agree = agreement(fp32, bf16)
                print(f"\nbfloat16 full path: {bf16_rate:.1f} frames/s = {bf16_rate / official_rate:.2f}x (c), "
                      f"{bf16_rate / full_rate:.2f}x float32")
                print(f"    bytes within one quantization step of float32: rgb {agree['rgb']:.2%}, "
                      f"audio {agree['audio']:.2%}")
        if args.whole:
            whole_process(folder, args.seconds, args.repeats)
        elif args.frame_sizes:
            size_peaks(folder, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        if args.memory:
            minutes = [float(m) for m in args.memory_minutes.split(",")]
            runs = memory_runs(folder, minutes, args.batch_size)
            print("\npeak memory (--max-frames 0, 64x48 source at 5 fps, one process each):")
            for run in runs:
                grown = (run["extract_peak_kib"] - run["after_load_kib"]) / KIB
                print(f"    {run['minutes']:g} min: {run['frames']} frames, process peak RSS {run['peak_kib'] / KIB:.0f} MiB "
                      f"(of which model loading {run['load_peak_kib'] / KIB:.0f} MiB); "
                      f"while extracting at most {run['extract_peak_kib'] / KIB:.0f} MiB "
                      f"({grown:+.0f} MiB over the {run['after_load_kib'] / KIB:.0f} MiB after loading), {run['seconds']:.0f} s")
            if len(runs) >= 2:
                first, last = runs[0], runs[-1]
                print(f"    ratio longest / shortest: process peak {last['peak_kib'] / first['peak_kib']:.3f}, "
                      f"extraction peak {last['extract_peak_kib'] / first['extract_peak_kib']:.3f}")


if __name__ == "__main__":
    main()
