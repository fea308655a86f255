"""`yt8m demo`: the whole path offline, on a fresh install, in a couple of minutes on 2 cores.

1. write a small labelled video set (one folder per class) and held-out clips,
2. extract features with RANDOM network weights (no download; clearly labelled as such),
3. pre-train a small base model on synthetic YT8M-format records (a stand-in for YT8M),
4. fine-tune it on the videos' features (`--init-from`, new label space, head re-initialised),
5. classify the held-out clips and write the HTML report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import typer

from yt8m.app.console import console, print_warning
from yt8m.core import Yt8mError

DEMO_CLASSES = 3
DEMO_PER_CLASS = 4  # training videos per class
DEMO_SECONDS = 6.0  # seconds per video: 6 frames at 1 fps
DEMO_MAX_FRAMES = 30
DEMO_MODEL = "NeXtVLADModel"
# batch_norm_decay 0.99 (Keras' default): slim's 0.999 would leave the batch-norm statistics of a
# 60-step run near their initial values.
DEMO_HPARAMS = {"nextvlad_cluster_size": 8, "nextvlad_hidden_size": 64, "groups": 4, "batch_norm_decay": 0.99}
DEMO_BASE_CLASSES = 20  # the synthetic "YT8M" the base model is pre-trained on
DEMO_BASE_VIDEOS = 400
DEMO_BASE_STEPS = 60
DEMO_TUNE_STEPS = 60
DEMO_FREEZE_STEPS = 20
DEMO_TRAINING = {"batch_size": 8, "base_learning_rate": 0.01, "learning_rate_decay_examples": 4000, "log_every_steps": 20}
DEMO_SEED = 0
HELDOUT_SEED = 99


@dataclass
class DemoResult:
    """Where the demo put things and how well the fine-tuned model did on the held-out clips."""

    out: Path
    report: Path
    train_dir: Path
    correct: int
    total: int
    results: list = field(default_factory=list)


def run_demo(out: Path, say: Callable[[str], None] = lambda text: None) -> DemoResult:
    """Run the five demo stages into `out` (see the module docstring); `say` gets one line per stage."""
    from yt8m import api
    from yt8m.app.report import write_report
    from yt8m.classifier.synthetic import make_synthetic_records
    from yt8m.classification import classify_files
    from yt8m.core import WEIGHTS_RANDOM, FeatureSpec
    from yt8m.extractor.backbones import load_feature_models
    from yt8m.extractor.job import extract as extract_videos
    from yt8m.extractor.synthetic import make_labelled_video_set

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def stage(text: str) -> None:
        say(f"[{time.monotonic() - started:5.1f}s] {text}")

    stage(f"1/5 writing {DEMO_CLASSES * DEMO_PER_CLASS} labelled videos and {DEMO_CLASSES} held-out clips under {out / 'videos'}")
    videos = make_labelled_video_set(out / "videos" / "train", DEMO_CLASSES, DEMO_PER_CLASS, DEMO_SECONDS, seed=DEMO_SEED)
    heldout = make_labelled_video_set(out / "videos" / "heldout", DEMO_CLASSES, 1, DEMO_SECONDS, seed=HELDOUT_SEED)
    names = sorted({name for _, name in videos})

    stage("2/5 extracting features with RANDOM network weights (offline; NOT YouTube-8M features)")
    models = load_feature_models(WEIGHTS_RANDOM)
    records = out / "features" / "videos.tfrecord"
    extracted = extract_videos(
        [out / "videos" / "train"], records, weights=WEIGHTS_RANDOM, max_frames=DEMO_MAX_FRAMES,
        labels_from_folders=True, overwrite=True, models=models,
    )  # the label map (folder names, sorted) is saved beside the records
    if extracted.errors:
        raise Yt8mError(extracted.errors[0])

    spec = FeatureSpec(max_frames=DEMO_MAX_FRAMES)
    base_dir, tuned_dir = out / "train" / "base", out / "train" / "tuned"
    stage(f"3/5 pre-training a small {DEMO_MODEL} on {DEMO_BASE_VIDEOS} synthetic YT8M-format records ({DEMO_BASE_CLASSES} classes)")
    make_synthetic_records(
        out / "features" / "base.tfrecord", DEMO_BASE_VIDEOS, DEMO_BASE_CLASSES, frames=(3, 10), seed=DEMO_SEED,
        overwrite=True,  # a demo run again into the same folder starts over, like its extraction
    )
    api.train(
        str(out / "features" / "base.tfrecord"), base_dir, DEMO_MODEL, feature_spec=spec, num_classes=DEMO_BASE_CLASSES,
        start_new_model=True, **DEMO_HPARAMS, **DEMO_TRAINING, max_steps=DEMO_BASE_STEPS,
    )

    stage(f"4/5 fine-tuning on the videos' features: --init-from {base_dir} --num-classes {DEMO_CLASSES} ({', '.join(names)})")
    result = api.train(
        str(records), tuned_dir, num_classes=DEMO_CLASSES, init_from=base_dir, start_new_model=True,
        freeze_pooling_steps=DEMO_FREEZE_STEPS, **DEMO_TRAINING, max_steps=DEMO_TUNE_STEPS,
    )
    if result.last is not None:
        stage(f"    step {result.step}: loss {result.last.loss:.3f}, hit@1 {result.last.hit_at_one:.2f} on the last batch")

    stage(f"5/5 classifying the held-out clips with {tuned_dir}")
    predictor = api.load_model(tuned_dir)
    outcome = classify_files(
        [path for path, _ in heldout], predictor, feature_models=models, top_k=DEMO_CLASSES, segments=True,
        max_frames=DEMO_MAX_FRAMES,
    )
    if outcome.errors:
        raise Yt8mError(outcome.errors[0])
    truth = {str(path): name for path, name in heldout}
    correct = sum(1 for r in outcome.results if r.labels and r.labels[0].name == truth[r.source])
    report = write_report(outcome.results, out / "report.html")
    stage(f"done: {correct}/{len(outcome.results)} held-out clips correct; report {report}")
    return DemoResult(out, report, tuned_dir, correct, len(outcome.results), outcome.results)


def demo(
    out: Path = typer.Option(Path("yt8m-demo"), "--out", help="Folder for the videos, features, models and report."),
) -> None:
    """Offline demo: videos -> features (random weights) -> fine-tuned model -> labels + HTML report."""
    from rich.table import Table

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    print_warning("the demo uses RANDOM feature-network weights: it shows the workflow, not YT8M's labels")
    result = run_demo(out, say)
    table = Table(title="held-out clips", title_justify="left")
    table.add_column("clip")
    table.add_column("top label")
    table.add_column("score", justify="right")
    for item in result.results:
        top = item.labels[0]
        table.add_row(Path(item.source).name, top.name, f"{top.score:.3f}")
    console.print(table)
    say(f"open {result.report} in a browser; next: `yt8m classify VIDEO --model {result.train_dir}`")
