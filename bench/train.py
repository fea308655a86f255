"""Training throughput of every registered classifier, and the input pipeline's own rate, in one run.

    python bench/train.py                       # every model, published sizes and batch sizes
    python bench/train.py --models NeXtVLADModel,DbofModel --steps 5 --frames 300
    python bench/train.py --frames 30 --batch-size 32 --steps 3   # a short run on a CPU

For each model: the published hyperparameters and batch size (`ModelConfig.create`), one warm-up
step (tracing) and `--steps` timed steps of the real train step (`make_train_step`: forward,
cross-entropy, gradients, clipping, Adam) on an in-memory batch, so the number is the model's own
speed. The input pipeline is timed separately: synthetic YT8M records written to a temporary
folder, read with `RecordSource.dataset` (parse, dequantize, L2-normalise, pad, batch).
Prints one table (and `--json` for machines).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yt8m._tf import import_tensorflow_quietly  # noqa: E402

PIPELINE_VIDEOS = 512
PIPELINE_BATCH = 64


def input_pipeline_rate(frames: int, videos: int, batch_size: int, num_classes: int) -> dict:
    """Examples/s of the frame-level reader over synthetic records (second pass, files cached)."""
    from yt8m.classifier.readers import RecordSource
    from yt8m.classifier.synthetic import make_synthetic_records
    from yt8m.core import FeatureSpec

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        make_synthetic_records(
            Path(tmp) / "bench.tfrecord", videos, num_classes, frames=(frames, frames), shard_size=max(videos // 8, 1)
        )
        written = time.perf_counter() - started
        source = RecordSource(str(Path(tmp) / "bench-*"), FeatureSpec(max_frames=frames), num_classes)
        dataset = source.dataset(batch_size, shuffle=True, seed=0)
        for _ in dataset:  # warm-up: tracing, page cache
            pass
        started = time.perf_counter()
        count = sum(int(batch["labels"].shape[0]) for batch in dataset)
        elapsed = time.perf_counter() - started
    return {
        "videos": count,
        "frames": frames,
        "batch_size": batch_size,
        "examples_per_second": count / elapsed,
        "write_examples_per_second": videos / written,
    }


def model_rate(name: str, steps: int, frames: int, batch_size: int | None, num_classes: int) -> dict:
    """Examples/s of the train step of `name` at its published (or the given) batch size."""
    tf = import_tensorflow_quietly()
    from yt8m.classifier.bundle import build_model
    from yt8m.classifier.config import ModelConfig
    from yt8m.classifier.training import make_optimizer, make_strategy, make_train_step
    from yt8m.core import FeatureSpec

    training = {"batch_size": batch_size} if batch_size else {}
    config = ModelConfig.create(
        name, feature_spec=FeatureSpec(max_frames=frames), num_classes=num_classes, training=training
    )
    batch = config.training.batch_size
    strategy = make_strategy()
    with strategy.scope():
        model = build_model(config)
        optimizer = make_optimizer(config.training)
        optimizer.build(model.trainable_variables)
    step = make_train_step(model, optimizer, strategy, config.training)
    rng = np.random.default_rng(0)
    width = config.feature_spec.total_size
    shape = (batch, width) if config.video_level else (batch, frames, width)
    features = rng.normal(size=shape).astype(np.float32)
    if not config.video_level:
        features /= np.linalg.norm(features, axis=-1, keepdims=True)
    labels = (rng.random((batch, num_classes)) < 3.0 / num_classes).astype(np.float32)
    inputs = {
        "frames": tf.constant(features),
        "num_frames": tf.constant(rng.integers(frames // 2, frames + 1, size=batch).astype(np.int32)),
        "labels": tf.constant(labels),
    }
    started = time.perf_counter()
    float(step(inputs)[0])  # tracing + first step
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        loss = step(inputs)[0]
    float(loss)
    elapsed = time.perf_counter() - started
    return {
        "model": config.model,
        "parameters": int(model.count_params()),
        "batch_size": batch,
        "steps": steps,
        "seconds_per_step": elapsed / steps,
        "examples_per_second": batch * steps / elapsed,
        "first_step_seconds": warmup,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="Comma list of models (default: every registered one).")
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per model (after one warm-up step).")
    parser.add_argument("--frames", type=int, default=300, help="Frames per video (the published models use 300).")
    parser.add_argument("--batch-size", type=int, default=None, help="Override every model's published batch size.")
    parser.add_argument("--classes", type=int, default=3862, help="Number of classes.")
    parser.add_argument("--pipeline-videos", type=int, default=PIPELINE_VIDEOS, help="Videos for the reader benchmark.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args(argv)

    import_tensorflow_quietly()
    from yt8m.classifier.models import list_models

    names = [m.strip() for m in args.models.split(",") if m.strip()] or list_models()
    pipeline = input_pipeline_rate(args.frames, args.pipeline_videos, PIPELINE_BATCH, args.classes)
    if not args.json:
        print(
            f"input pipeline: {pipeline['examples_per_second']:,.0f} examples/s "
            f"({pipeline['videos']} videos x {args.frames} frames, batch {PIPELINE_BATCH}); "
            f"writing synthetic records: {pipeline['write_examples_per_second']:,.0f} videos/s",
            flush=True,
        )
        print(f"{'model':<26}{'params':>14}{'batch':>7}{'s/step':>10}{'examples/s':>12}", flush=True)
    results = []
    for name in names:
        row = model_rate(name, args.steps, args.frames, args.batch_size, args.classes)
        results.append(row)
        if not args.json:
            print(
                f"{row['model']:<26}{row['parameters']:>14,}{row['batch_size']:>7}"
                f"{row['seconds_per_step']:>10.3f}{row['examples_per_second']:>12,.1f}",
                flush=True,
            )
    if args.json:
        print(json.dumps({"input_pipeline": pipeline, "models": results, "device": _device()}, indent=2))
    else:
        print(f"device: {_device()}")
    return 0


def _device() -> str:
    tf = import_tensorflow_quietly()
    gpus = tf.config.list_logical_devices("GPU")
    return f"{len(gpus)} GPU(s)" if gpus else f"CPU ({os.cpu_count()} cores)"


if __name__ == "__main__":
    sys.exit(main())
