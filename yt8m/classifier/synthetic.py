"""Synthetic YT8M-format records with learnable structure, for tests, benchmarks and offline demos.

Each class owns fixed random unit directions in the rgb and audio feature spaces (its
prototypes, drawn from `pattern_seed`, so a training set and an evaluation set generated with
different `seed`s share them). Every frame is Gaussian noise; a video's class patterns are added
to SOME of its frames only (about `signal_fraction`), so how a model pools over frames matters.
Features are clipped and quantized with `yt8m.pca.quantize` exactly like real ones. Labels are
multi-hot with a skewed (Zipf-like) class frequency: class 0 is the most frequent.

With `segments=True` (the 2019 segment task) the patterns appear only inside some 5-frame windows
aligned at multiples of 5 and the segment fields are filled: for every label of the video its
windows with the pattern are rated 1 and as many windows without it are rated 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from yt8m.core import AUDIO_SIZE, RGB_SIZE, SEGMENT_FRAMES, VideoFeatures, Yt8mError
from yt8m.data.shards import ShardWriter
from yt8m.pca.quantization import dequantize, quantize

NOISE_STD = 0.5  # per-dimension noise, about the spread of whitened PCA features
SIGNAL_NORMS = (6.0, 3.0)  # L2 norm of a class pattern added to a frame (rgb, audio)
DEFAULT_FRAMES = (20, 40)
DEFAULT_LABELS_PER_VIDEO = (1, 3)
DEFAULT_SIGNAL_FRACTION = 0.25
ZIPF_EXPONENT = 1.0  # class frequency ~ 1 / (rank + 1) ** ZIPF_EXPONENT
SYNTHETIC_EXTRA = "source"  # recorded in the record's yt8m_ context so nobody mistakes it for real data


def class_frequencies(num_classes: int) -> np.ndarray:
    """Probability of drawing each class as a video's label (skewed, class 0 most frequent)."""
    weights = 1.0 / np.arange(1, num_classes + 1, dtype=np.float64) ** ZIPF_EXPONENT
    return weights / weights.sum()


def class_patterns(
    num_classes: int, feature_sizes: tuple[int, ...] = (RGB_SIZE, AUDIO_SIZE), pattern_seed: int = 0
) -> list[np.ndarray]:
    """Per feature, a float32 [num_classes, size] array of class patterns (random directions, fixed norm)."""
    rng = np.random.default_rng(pattern_seed)
    patterns = []
    for position, size in enumerate(feature_sizes):
        directions = rng.normal(size=(num_classes, size))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        norm = SIGNAL_NORMS[min(position, len(SIGNAL_NORMS) - 1)]
        patterns.append((directions * norm).astype(np.float32))
    return patterns


def _choose_labels(rng: np.random.Generator, num_classes: int, labels_per_video: tuple[int, int], freq: np.ndarray) -> list[int]:
    low, high = labels_per_video
    count = int(rng.integers(low, high + 1))
    count = max(1, min(count, num_classes))
    return sorted(int(c) for c in rng.choice(num_classes, size=count, replace=False, p=freq))


def synthetic_videos(
    num_videos: int,
    num_classes: int,
    frames: tuple[int, int] = DEFAULT_FRAMES,
    seed: int = 0,
    labels_per_video: tuple[int, int] = DEFAULT_LABELS_PER_VIDEO,
    segments: bool = False,
    pattern_seed: int = 0,
    signal_fraction: float = DEFAULT_SIGNAL_FRACTION,
    feature_sizes: tuple[int, int] = (RGB_SIZE, AUDIO_SIZE),
) -> Iterator[VideoFeatures]:
    """Generate `num_videos` synthetic `VideoFeatures` (quantized rgb/audio, labels, means, segments)."""
    min_frames, max_frames = frames
    if num_videos < 0 or num_classes < 1:
        raise Yt8mError("synthetic data needs >= 0 videos and >= 1 class")
    if not 1 <= min_frames <= max_frames:
        raise Yt8mError(f"frames must satisfy 1 <= min <= max, got {min_frames}..{max_frames}")
    if segments and min_frames < SEGMENT_FRAMES:
        raise Yt8mError(f"segment data needs videos of at least {SEGMENT_FRAMES} frames")
    low, high = labels_per_video
    if not 1 <= low <= high:
        raise Yt8mError(f"labels per video must satisfy 1 <= min <= max, got {low}..{high}")
    if not 0 < signal_fraction <= 1:
        raise Yt8mError(f"signal fraction must be in (0, 1], got {signal_fraction}")
    patterns = class_patterns(num_classes, feature_sizes, pattern_seed)
    freq = class_frequencies(num_classes)
    rng = np.random.default_rng(seed)
    for index in range(num_videos):
        length = int(rng.integers(min_frames, max_frames + 1))
        labels = _choose_labels(rng, num_classes, labels_per_video, freq)
        floats = [rng.normal(0.0, NOISE_STD, size=(length, size)).astype(np.float32) for size in feature_sizes]
        segment = {"start": [], "end": [], "label": [], "score": []}
        if segments:
            windows = np.arange(length // SEGMENT_FRAMES) * SEGMENT_FRAMES
        for label in labels:
            if segments:
                count = max(1, int(round(signal_fraction * len(windows))))
                chosen = np.sort(rng.choice(windows, size=count, replace=False))
                rows = (chosen[:, None] + np.arange(SEGMENT_FRAMES)[None, :]).ravel()
                others = np.setdiff1d(windows, chosen)
                negatives = np.sort(rng.choice(others, size=min(count, len(others)), replace=False))
                for start, score in [(s, 1.0) for s in chosen] + [(s, 0.0) for s in negatives]:
                    segment["start"].append(int(start))
                    segment["end"].append(int(start) + SEGMENT_FRAMES)
                    segment["label"].append(label)
                    segment["score"].append(score)
            else:
                count = max(1, int(round(signal_fraction * length)))
                rows = rng.choice(length, size=count, replace=False)
            for values, pattern in zip(floats, patterns):
                values[rows] += pattern[label]
        quantized = [quantize(values) for values in floats]
        means = [dequantize(q).mean(axis=0, dtype=np.float32) for q in quantized]
        yield VideoFeatures(
            video_id=f"syn{seed}-{index:06d}",
            rgb=quantized[0],
            audio=quantized[1],
            labels=labels,
            mean_rgb=means[0],
            mean_audio=means[1],
            segment_start_times=segment["start"],
            segment_end_times=segment["end"],
            segment_labels=segment["label"],
            segment_scores=segment["score"],
            extras={SYNTHETIC_EXTRA: "synthetic"},
        )


def make_synthetic_records(
    out_path: str | os.PathLike,
    num_videos: int,
    num_classes: int,
    frames: tuple[int, int] = DEFAULT_FRAMES,
    seed: int = 0,
    labels_per_video: tuple[int, int] = DEFAULT_LABELS_PER_VIDEO,
    shard_size: int | None = None,
    segments: bool = False,
    pattern_seed: int = 0,
    signal_fraction: float = DEFAULT_SIGNAL_FRACTION,
    feature_sizes: tuple[int, int] = (RGB_SIZE, AUDIO_SIZE),
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write synthetic frame-level records (with `mean_rgb`/`mean_audio` too) and return the files.

    Files are written with `ShardWriter` (temp name + rename; `shard_size` splits them into
    `OUT-00000-of-000NN` shards). `feature_sizes` other than (1024, 128) make small custom
    datasets (read them with a matching `FeatureSpec`). `progress(done, total)` is called after every video.
    Existing output is refused before anything is generated unless `overwrite=True` replaces it.
    """
    writer = ShardWriter(out_path, shard_size=shard_size, overwrite=overwrite)  # checks the output first
    videos = synthetic_videos(
        num_videos,
        num_classes,
        frames=frames,
        seed=seed,
        labels_per_video=labels_per_video,
        segments=segments,
        pattern_seed=pattern_seed,
        signal_fraction=signal_fraction,
        feature_sizes=feature_sizes,
    )
    try:
        for done, video in enumerate(videos, start=1):
            writer.write(video)
            if progress is not None:
                progress(done, num_videos)
    except BaseException:
        writer.abort()
        raise
    return writer.close()
