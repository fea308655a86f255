"""`yt8m synth / train / eval / predict / export` through the CLI: round trip, resume, metrics, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from yt8m import api
from yt8m.app.cli import main
from yt8m.classifier import metrics
from yt8m.classifier.evaluation import (
    PREDICTIONS_HEADER,
    format_prediction_line,
    load_scores,
    read_predictions_csv,
    top_k_pairs,
)
from yt8m.classifier.training import latest_checkpoint

CLASSES = 6
TINY_DBOF = ["--set", "iterations=8", "--set", "dbof_cluster_size=32", "--set", "dbof_hidden_size=16"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("yt8m: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory) -> Path:
    """Synthetic YT8M records (the real 1024 + 128 feature sizes) written by `yt8m synth`."""
    root = tmp_path_factory.mktemp("cli")
    for args in (
        ["-o", root / "train.tfrecord", "--videos", 600, "--seed", 1, "--shard-size", 200],
        ["-o", root / "eval.tfrecord", "--videos", 90, "--seed", 2],
    ):
        assert main(["synth", *map(str, args), "--classes", str(CLASSES), "--frames", "4,8"]) == 0
    return root


def train_args(records_dir: Path, train_dir: Path, *extra: str) -> list[str]:
    return [
        "train", "--train-data", str(records_dir / "train-*"), "--train-dir", str(train_dir),
        "--num-classes", str(CLASSES), "--max-frames", "8", "--batch-size", "32",
        "--base-learning-rate", "0.01", *extra,
    ]


def test_train_eval_predict_export_round_trip(records_dir, tmp_path, capsys):
    train_dir = tmp_path / "run"
    code, out, err = run(capsys, *train_args(records_dir, train_dir, "--model", "DbofModel", "--max-steps", "40",
                                             "--ema-decay", "0.95", *TINY_DBOF))
    assert code == 0, err
    assert "trained DbofModel to step 40" in out
    assert "step 40" in err and "ex/s" in err and "gap" in err  # plain progress lines (not a terminal)
    config = json.loads((train_dir / "config.json").read_text())
    assert config["model"] == "DbofModel" and config["hparams"]["dbof_cluster_size"] == 32
    assert config["num_classes"] == CLASSES and config["training"]["ema_decay"] == 0.95

    # Resume: the same command line with a later --max-steps continues from ckpt-40.
    code, out, err = run(capsys, "train", "--train-data", records_dir / "train-*", "--train-dir", train_dir,
                         "--max-steps", "60")
    assert code == 0, err
    assert "to step 60 (resumed at step 40)" in out
    assert latest_checkpoint(train_dir).endswith("ckpt-60")

    code, out, err = run(capsys, "eval", "--eval-data", records_dir / "eval.tfrecord", "--train-dir", train_dir, "--json")
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["step"] == 60 and evaluated["num_examples"] == 90

    csv_path, scores_path = tmp_path / "out" / "predictions.csv", tmp_path / "out" / "scores.npz"
    code, out, err = run(capsys, "predict", "--input-data", records_dir / "eval.tfrecord", "--train-dir", train_dir,
                         "-o", csv_path, "--scores", scores_path)
    assert code == 0, err
    assert "90 videos" in out
    ids, predictions, labels = load_scores(scores_path)
    assert predictions.shape == (90, CLASSES) and len(set(ids)) == 90

    # The eval numbers are the metric functions applied to the predictions.
    assert evaluated["hit_at_one"] == metrics.hit_at_one(predictions, labels)
    assert evaluated["perr"] == metrics.perr(predictions, labels)
    assert evaluated["gap"] == metrics.gap(predictions, labels)
    assert evaluated["map"] == metrics.mean_ap(predictions, labels)
    eps = 1e-5
    p = predictions.astype(np.float64)
    loss = -(labels * np.log(p + eps) + (1 - labels) * np.log(1 - p + eps)).sum(axis=1).mean()
    assert evaluated["loss"] == pytest.approx(loss, rel=1e-4)

    # The CSV: header, one row per video, pairs sorted by score, the same scores as the .npz.
    lines = csv_path.read_text().splitlines()
    assert lines[0] == PREDICTIONS_HEADER and len(lines) == 91
    rows = read_predictions_csv(csv_path)
    assert list(rows) == ids
    dense = np.zeros_like(predictions)
    for row, video_id in enumerate(ids):
        pairs = rows[video_id]
        assert len(pairs) == CLASSES  # top 20 of 6 classes
        scores = [score for _, score in pairs]
        assert scores == sorted(scores, reverse=True)
        for label, score in pairs:
            assert score == pytest.approx(predictions[row, label], rel=1e-5, abs=1e-6)
            dense[row, label] = score
    assert metrics.gap(dense, labels) == pytest.approx(evaluated["gap"], abs=1e-3)
    assert not list(csv_path.parent.glob(".*inprogress*"))

    code, out, err = run(capsys, "export", "--train-dir", train_dir, "-o", tmp_path / "saved")
    assert code == 0, err
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    assert {"serialized", "rgb_and_audio"} <= set(loaded.signatures)
    code, _, err = run(capsys, "export", "--train-dir", train_dir, "-o", tmp_path / "saved")
    assert_one_line_error(code, err, "saved", "--overwrite")


def test_top_k_and_plain_table(records_dir, tmp_path, capsys):
    train_dir = tmp_path / "run"
    code, _, err = run(capsys, *train_args(records_dir, train_dir, "--model", "MoeModel", "--max-steps", "10",
                                           "--export"))
    assert code == 0, err
    assert (train_dir / "export" / "saved_model.pb").exists()
    code, out, err = run(capsys, "eval", "--eval-data", records_dir / "eval.tfrecord", "--train-dir", train_dir)
    assert code == 0, err
    assert "GAP" in out and "Hit@1" in out and "90" in out
    csv_path = tmp_path / "p.csv"
    assert run(capsys, "predict", "--input-data", records_dir / "eval.tfrecord", "--train-dir", train_dir,
               "-o", csv_path, "--top-k", "2")[0] == 0
    assert all(len(pairs) == 2 for pairs in read_predictions_csv(csv_path).values())


# ----------------------------------------------------------------------------- malformed inputs


def test_corrupt_shard_is_one_line_naming_the_file(records_dir, tmp_path, capsys):
    bad = tmp_path / "bad.tfrecord"
    data = bytearray((records_dir / "train-00001-of-00003.tfrecord").read_bytes())
    data[3000:3016] = b"\x00" * 16
    bad.write_bytes(bytes(data))
    code, _, err = run(capsys, "train", "--train-data", f"{records_dir / 'train-00000-of-00003.tfrecord'},{bad}",
                       "--model", "MoeModel", "--train-dir", tmp_path / "run", "--num-classes", CLASSES,
                       "--batch-size", "32", "--max-steps", "30")
    assert_one_line_error(code, err, str(bad))
    assert not (tmp_path / "run" / "config.json").exists()


def test_wrong_feature_sizes_name_the_file_and_feature(records_dir, tmp_path, capsys):
    small = tmp_path / "small.tfrecord"
    assert main(["synth", "-o", str(small), "--videos", "5", "--classes", str(CLASSES), "--feature-sizes", "32,8"]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "train", "--train-data", small, "--model", "FrameLevelLogisticModel",
                       "--train-dir", tmp_path / "run", "--num-classes", CLASSES, "--max-steps", "3")
    assert_one_line_error(code, err, str(small), "'rgb'", "32 bytes", "expected 1024")


def test_labels_beyond_num_classes(records_dir, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--train-data", records_dir / "eval.tfrecord", "--model", "MoeModel",
                       "--train-dir", tmp_path / "run", "--num-classes", "2", "--max-steps", "3")
    assert_one_line_error(code, err, "eval.tfrecord", "--num-classes")


def test_train_dir_made_for_another_model(records_dir, tmp_path, capsys):
    train_dir = tmp_path / "run"
    assert run(capsys, *train_args(records_dir, train_dir, "--model", "MoeModel", "--max-steps", "2"))[0] == 0
    code, _, err = run(capsys, *train_args(records_dir, train_dir, "--model", "LogisticModel", "--max-steps", "4"))
    assert_one_line_error(code, err, str(train_dir / "config.json"), "MoeModel", "--start-new-model")
    code, _, err = run(capsys, *train_args(records_dir, train_dir, "--max-steps", "4", "--set", "moe_num_mixtures=3"))
    assert_one_line_error(code, err, "config.json", "moe_num_mixtures")
    code, out, err = run(capsys, *train_args(records_dir, train_dir, "--model", "LogisticModel", "--max-steps", "3",
                                             "--start-new-model"))
    assert code == 0, err
    assert "trained LogisticModel to step 3" in out


def test_other_user_mistakes(records_dir, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--train-data", records_dir / "eval.tfrecord", "--train-dir", tmp_path / "new")
    assert_one_line_error(code, err, "--model")
    code, _, err = run(capsys, "train", "--train-data", records_dir / "eval.tfrecord", "--train-dir", tmp_path / "new",
                       "--model", "NoSuchModel")
    assert_one_line_error(code, err, "NoSuchModel")
    code, _, err = run(capsys, "train", "--train-data", records_dir / "eval.tfrecord", "--train-dir", tmp_path / "new",
                       "--model", "MoeModel", "--set", "moe_num_mixtures=two")
    assert_one_line_error(code, err, "moe_num_mixtures")
    code, _, err = run(capsys, "train", "--train-data", tmp_path / "missing-*.tfrecord", "--train-dir", tmp_path / "new",
                       "--model", "MoeModel")
    assert_one_line_error(code, err, "missing-*.tfrecord")
    code, _, err = run(capsys, "eval", "--eval-data", records_dir / "eval.tfrecord", "--train-dir", tmp_path / "nothing")
    assert_one_line_error(code, err, "config.json")


def test_prediction_lines_rank_by_score_then_class_index():
    predictions = np.array([[0.1, 0.5, 0.5, 0.25], [0.0, 0.0, 1e-7, 0.75]], np.float32)
    classes, scores = top_k_pairs(predictions, 3)
    assert format_prediction_line("a", classes[0], scores[0]) == "a,1 0.5 2 0.5 3 0.25\n"
    assert format_prediction_line("b", classes[1], scores[1]) == "b,3 0.75 2 1e-07 0 0\n"


def test_an_interrupted_train_says_where_its_checkpoint_is_and_how_to_resume(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        stop = KeyboardInterrupt()
        stop.add_note(f"{tmp_path}: interrupted at step 7; checkpoint {tmp_path}/ckpt-7 (step 7); run the same training again")
        raise stop

    monkeypatch.setattr(api, "train", interrupted)
    code, _, err = run(capsys, "train", "--train-data", tmp_path / "x.tfrecord", "--train-dir", tmp_path, "--model", "MoeModel")
    assert code == 130
    assert "interrupted at step 7" in err and "ckpt-7" in err and "Traceback" not in err, err
