"""Benchmark: whole-process `yt8m classify` of a short clip against whole-process `yt8m extract` of it.

What a user waits for: `yt8m classify CLIP --model M --weights random --report R` (extraction,
the classifier, thumbnails, the HTML report) and `yt8m extract CLIP -o OUT --weights random`,
each a fresh process. The runs are alternated (the order flips every pair) in one run of this
script, after one untimed run of each (the first builds the random networks into the cache dir);
the machine may be shared, so compare the ratio, not the seconds. Target: classify at most 1.15x
extract (the video is decoded once; thumbnails and the model come almost free).

The classifier is a train dir made here with `yt8m.classifier.training` (one step on synthetic
records with YT8M's feature sizes and classes; `--model-name` picks the architecture).

    .venv/bin/python bench/classify.py --seconds 10 --pairs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from yt8m.core import NUM_CLASSES  # noqa: E402
from yt8m.extractor.synthetic import write_test_video  # noqa: E402

TARGET_RATIO = 1.15  # issue 15: classify at most this times extract, whole processes
YT8M_CLI = [sys.executable, "-c", "import sys; from yt8m.app.cli import entry; sys.argv[0] = 'yt8m'; entry()"]


def make_model(folder: Path, model_name: str) -> Path:
    """A train dir for `model_name`: one training step on synthetic records (YT8M sizes, 3862 classes)."""
    from yt8m.classifier import training
    from yt8m.classifier.config import ModelConfig
    from yt8m.classifier.synthetic import make_synthetic_records

    records = folder / "train.tfrecord"
    make_synthetic_records(records, 16, NUM_CLASSES, frames=(5, 20), seed=1, overwrite=True)
    config = ModelConfig.create(model_name, training={"batch_size": 8, "max_steps": 1})
    train_dir = folder / "model"
    training.train(str(records), train_dir, config, start_new_model=True)
    return train_dir


def timed(command: list[str], env: dict[str, str]) -> float:
    """Seconds one process takes (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[3:6])} ... failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of the generated clip.")
    parser.add_argument("--pairs", type=int, default=3, help="Timed (extract, classify) pairs, alternated.")
    parser.add_argument("--model-name", default="NeXtVLADModel", help="Classifier architecture to train and use.")
    parser.add_argument("--workdir", type=Path, default=None, help="Folder for the clip, model and cache (default: temp).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="yt8m-bench-classify-") as temporary:
        folder = args.workdir or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, YT8M_HOME=str(folder / "cache"), TF_CPP_MIN_LOG_LEVEL="3")
        clip = write_test_video(folder / "clip.mp4", args.seconds, fps=25, size=(320, 240), motion="circle",
                                audio="sine", noise=3.0)
        print(f"clip: {args.seconds:g} s, 320x240 at 25 fps, rgb + audio; YT8M_HOME={env['YT8M_HOME']}", flush=True)
        started = time.perf_counter()
        model = make_model(folder, args.model_name)
        print(f"classifier: {args.model_name}, {NUM_CLASSES} classes, made in {time.perf_counter() - started:.0f} s",
              flush=True)
        extract = YT8M_CLI + ["extract", str(clip), "-o", str(folder / "out.tfrecord"), "--weights", "random",
                              "--overwrite"]
        classify = YT8M_CLI + ["classify", str(clip), "--model", str(model), "--weights", "random",
                               "--format", "json", "--report", str(folder / "report.html")]
        warm = timed(extract, env), timed(classify, env)  # builds the random networks into the cache dir
        print(f"untimed warm-up: extract {warm[0]:.1f} s, classify {warm[1]:.1f} s", flush=True)

        times: dict[str, list[float]] = {"extract": [], "classify": []}
        for pair in range(args.pairs):
            order = ("extract", "classify") if pair % 2 == 0 else ("classify", "extract")
            for name in order:
                times[name].append(timed(extract if name == "extract" else classify, env))
            print(f"pair {pair + 1}: extract {times['extract'][-1]:.1f} s, classify {times['classify'][-1]:.1f} s "
                  f"(ratio {times['classify'][-1] / times['extract'][-1]:.2f}x)", flush=True)

        best = min(times["classify"]) / min(times["extract"])
        median = statistics.median(times["classify"]) / statistics.median(times["extract"])
        print(f"\nwhole-process yt8m classify / yt8m extract, {args.seconds:g} s clip: "
              f"best {best:.2f}x, median {median:.2f}x (target <= {TARGET_RATIO:.2f}x)")


if __name__ == "__main__":
    main()
