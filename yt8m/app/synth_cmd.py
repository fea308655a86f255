"""`yt8m synth`: write synthetic YT8M-format records with learnable structure (an offline demo and test data)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from yt8m.app.console import console
from yt8m.core import Yt8mError


def _pair(text: str, option: str) -> tuple[int, int]:
    """`20,40`, `20-40` or `30` -> (min, max)."""
    parts = [p for p in text.replace("-", ",").split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise Yt8mError(f"{option} {text!r}: expected MIN,MAX or N") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or values[0] > values[1]:
        raise Yt8mError(f"{option} {text!r}: expected MIN,MAX with MIN <= MAX")
    return values[0], values[1]


def synth(
    output: Path = typer.Option(..., "-o", "--output", help="Output TFRecord; with --shard-size: OUT-00000-of-000NN.tfrecord."),
    videos: int = typer.Option(1000, "--videos", min=0, help="Number of videos."),
    classes: int = typer.Option(10, "--classes", min=1, help="Number of classes."),
    frames: str = typer.Option("20,40", "--frames", help="Frames per video: MIN,MAX (or N)."),
    labels_per_video: str = typer.Option("1,3", "--labels-per-video", help="Labels per video: MIN,MAX (or N)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the videos (use another seed for an eval set)."),
    pattern_seed: int = typer.Option(0, "--pattern-seed", help="Seed of the class patterns (keep it for train and eval)."),
    shard_size: Optional[int] = typer.Option(None, "--shard-size", min=1, help="Records per output shard."),
    segments: bool = typer.Option(False, "--segments", help="Put patterns in 5-frame segments and write segment labels."),
    feature_sizes: str = typer.Option("1024,128", "--feature-sizes", help="rgb,audio sizes (small ones for quick tests)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output (else it is refused)."),
) -> None:
    """Write synthetic YT8M records: class patterns hidden in some frames of noise, skewed labels."""
    from yt8m.classifier.synthetic import make_synthetic_records

    try:
        sizes = tuple(int(p) for p in feature_sizes.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 2 or min(sizes) < 1:
        raise Yt8mError(f"--feature-sizes {feature_sizes!r}: expected two positive sizes RGB,AUDIO")
    files = make_synthetic_records(
        output,
        videos,
        classes,
        frames=_pair(frames, "--frames"),
        seed=seed,
        labels_per_video=_pair(labels_per_video, "--labels-per-video"),
        shard_size=shard_size,
        segments=segments,
        pattern_seed=pattern_seed,
        feature_sizes=sizes,
        overwrite=overwrite,
    )
    where = str(files[0]) if len(files) == 1 else f"{len(files)} shards ({files[0]} ...)"
    console.print(f"wrote {videos} synthetic videos, {classes} classes, to {where}", markup=False, highlight=False, soft_wrap=True)
