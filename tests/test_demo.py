"""End to end: `yt8m demo` (videos -> random-weight features -> fine-tuned model -> report), then
`yt8m classify` on fresh clips with the fine-tuned model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from yt8m.app.cli import main
from yt8m.app.demo_cmd import DEMO_CLASSES
from yt8m.classifier.config import ModelConfig
from yt8m.extractor.synthetic import make_labelled_video_set


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """Run `yt8m demo` once (module scope), capturing what it prints."""
    out = tmp_path_factory.mktemp("demo")
    buffer = io.StringIO()
    patch = pytest.MonkeyPatch()
    patch.setattr("yt8m.app.demo_cmd.console", Console(file=buffer, width=200))
    try:
        code = main(["demo", "--out", str(out)])
    finally:
        patch.undo()
    return {"out": out, "code": code, "text": buffer.getvalue()}


def test_demo_runs_every_stage_and_classifies_held_out_clips(demo):
    assert demo["code"] == 0, demo["text"]
    text = demo["text"]
    for stage in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert stage in text
    assert "RANDOM" in text
    # 3 held-out clips, one per class: all right (chance: 1 in 27)
    assert f"{DEMO_CLASSES}/{DEMO_CLASSES} held-out clips correct" in text
    out = demo["out"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "red_right" in page and "data:image/jpeg" in page and "random" in page.lower()
    tuned = out / "train" / "tuned"
    assert ModelConfig.load(tuned).num_classes == DEMO_CLASSES
    names = (tuned / "label_map.txt").read_text(encoding="utf-8").split()
    assert sorted(names) == ["blue_down", "green_circle", "red_right"]


def test_classify_fresh_clips_with_the_fine_tuned_model(demo, tmp_path, capsys):
    assert demo["code"] == 0
    clips = make_labelled_video_set(tmp_path / "fresh", DEMO_CLASSES, 1, 6.0, seed=1234)
    tuned = demo["out"] / "train" / "tuned"
    report = tmp_path / "fresh.html"
    # no --weights: the train dir remembers that its records were made with random weights
    assert json.loads((tuned / "config.json").read_text())["feature_weights"] == "random"
    code = main(
        ["classify", *[str(path) for path, _ in clips], "--model", str(tuned), "--format", "json",
         "--report", str(report), "--segments"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads(captured.out)
    truth = {str(path): name for path, name in clips}
    correct = sum(1 for result in results if result["labels"][0]["name"] == truth[result["source"]])
    assert correct >= DEMO_CLASSES - 1, results  # chance would be 1 of 3
    assert report.is_file() and Path(report).stat().st_size > 0
