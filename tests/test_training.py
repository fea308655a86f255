"""Training: every model learns the synthetic data, the loss/schedule/EMA/clipping recipe, checkpoints,
resume, config.json, TensorBoard logs, MirroredStrategy on two logical CPUs, SavedModel export."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from yt8m import trust
from yt8m.classifier import evaluation, training
from yt8m.classifier.bundle import build_model
from yt8m.data import records, shards
from yt8m.classifier.config import ModelConfig, load_label_weights, parse_overrides
from yt8m.classifier.export import export_model, read_export_metadata
from yt8m.classifier.metrics import gap
from yt8m.classifier.models import list_models
from yt8m.classifier.readers import RecordSource
from yt8m.classifier.synthetic import make_synthetic_records
from yt8m.core import FeatureSpec, Yt8mError
from yt8m.pca import dequantize

NUM_CLASSES = 10
SIZES = (64, 16)  # small custom features keep every model fast; the format is YT8M's
FRAMES = 10
SPEC = FeatureSpec(sizes=SIZES, max_frames=FRAMES)
STEPS = 300
WIDE_MARGIN = 0.25  # GAP above the label-frequency baseline a model must reach

# Batch-norm statistics of 300-step runs: Keras' decay 0.99 settles in time, slim's 0.999 (the
# models' faithful default) would still be near its initial values and evaluation would suffer.
SHORT_RUN = {"batch_norm_decay": 0.99}
# Tiny versions of every registered model (few clusters / cells / hidden units).
TINY = {
    "LogisticModel": {},
    "MoeModel": {**SHORT_RUN},
    "FrameLevelLogisticModel": {},
    "DbofModel": {"iterations": FRAMES, "dbof_cluster_size": 32, "dbof_hidden_size": 16, **SHORT_RUN},
    "LstmModel": {"lstm_cells": 16, "lstm_layers": 1, **SHORT_RUN},
    "NetVLADModelLF": {"iterations": FRAMES, "netvlad_cluster_size": 4, "netvlad_hidden_size": 16, **SHORT_RUN},
    "NetFVModelLF": {"iterations": FRAMES, "fv_cluster_size": 4, "fv_hidden_size": 16, **SHORT_RUN},
    "SoftDbofModelLF": {"iterations": FRAMES, "dbof_cluster_size": 32, "dbof_hidden_size": 16, **SHORT_RUN},
    "GatedDbofModelLF": {"iterations": FRAMES, "dbof_cluster_size": 32, "dbof_hidden_size": 16, **SHORT_RUN},
    "GruModel": {"gru_cells": 16, "gru_layers": 1, **SHORT_RUN},
    "NeXtVLADModel": {"nextvlad_cluster_size": 4, "nextvlad_hidden_size": 16, "groups": 4, **SHORT_RUN},
    "MixNeXtVladModel": {"nextvlad_cluster_size": 4, "nextvlad_hidden_size": 16, "groups": 4, "mix_number": 2, **SHORT_RUN},
    "TransformerModel": {"bert_hidden_size": 16, "bert_num_layers": 1, "bert_num_heads": 2, "bert_intermediate_size": 32, **SHORT_RUN},
    "Bert": {"bert_attention_heads": 4, "bert_intermediate_size": 16, "bert_hidden_layer": 1, **SHORT_RUN},
    "BertCross": {"bert_attention_heads": 4, "bert_intermediate_size": 16, **SHORT_RUN},
    "BERTMean": {"bert_attention_heads": 4, "bert_intermediate_size": 16, "bert_hidden_layer": 1, **SHORT_RUN},
    "BERTFirst": {"bert_attention_heads": 4, "bert_intermediate_size": 16, "bert_hidden_layer": 1, **SHORT_RUN},
    "BERTCrossMean": {"bert_attention_heads": 4, "bert_intermediate_size": 16, **SHORT_RUN},
    "BERTCrossAttn": {"bert_attention_heads": 4, "bert_intermediate_size": 16, **SHORT_RUN},
}
# Fast settings for every test: a decaying learning rate lets batch-norm statistics settle.
FAST = {
    "batch_size": 32,
    "base_learning_rate": 0.01,
    "learning_rate_decay": 0.7,
    "learning_rate_decay_examples": 3200,
    "log_every_steps": 50,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Synthetic train (3000 videos, 4 shards) and held-out eval (300) records with small features."""
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_records(root / "train.tfrecord", 3000, NUM_CLASSES, frames=(FRAMES // 2, FRAMES), seed=1,
                           shard_size=750, feature_sizes=SIZES)
    make_synthetic_records(root / "eval.tfrecord", 300, NUM_CLASSES, frames=(FRAMES // 2, FRAMES), seed=2,
                           feature_sizes=SIZES)
    return {"train": str(root / "train-*"), "eval": str(root / "eval.tfrecord"), "root": root}


def labels_of(pattern: str) -> np.ndarray:
    batches = RecordSource(pattern, SPEC, NUM_CLASSES).iterate(512)
    return np.concatenate([b["labels"] for b in batches])


def tiny_config(model: str, **training_settings) -> ModelConfig:
    return ModelConfig.create(
        model, feature_spec=SPEC, num_classes=NUM_CLASSES, overrides=TINY[model], training={**FAST, **training_settings}
    )


def test_every_registered_model_has_a_tiny_setting():
    assert sorted(TINY) == sorted(list_models())


@pytest.mark.slow
@pytest.mark.parametrize("model", list_models())
def test_every_model_beats_the_label_frequency_baseline(model, data, tmp_path):
    keras.utils.set_random_seed(0)
    train_labels, eval_labels = labels_of(data["train"]), labels_of(data["eval"])
    baseline = gap(np.tile(train_labels.mean(axis=0), (len(eval_labels), 1)), eval_labels)
    result = training.train(data["train"], tmp_path / "run", tiny_config(model, max_steps=STEPS))
    assert result.step == STEPS
    metrics = evaluation.evaluate(data["eval"], tmp_path / "run", write_summaries=False)
    assert metrics["num_examples"] == len(eval_labels)
    assert metrics["gap"] > baseline + WIDE_MARGIN, (model, metrics["gap"], baseline)


# ----------------------------------------------------------------------------- the recipe


def test_cross_entropy_is_the_starters():
    labels = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
    predictions = np.array([[0.9, 0.2, 0.4], [0.0, 1.0, 0.5]], np.float32)
    eps = 1e-5
    expected = -(labels * np.log(predictions + eps) + (1 - labels) * np.log(1 - predictions + eps)).sum(axis=1)
    np.testing.assert_allclose(training.cross_entropy(labels, predictions), expected, rtol=1e-5)
    weights = np.array([2.0, 0.0, 1.0], np.float32)
    weighted = -((labels * np.log(predictions + eps) + (1 - labels) * np.log(1 - predictions + eps)) * weights).sum(1)
    np.testing.assert_allclose(training.cross_entropy(labels, predictions, weights), weighted, rtol=1e-5)


def test_staircase_learning_rate_decay():
    settings = tiny_config("FrameLevelLogisticModel", base_learning_rate=0.5, learning_rate_decay=0.8,
                           learning_rate_decay_examples=1000, batch_size=300).training
    schedule = training.learning_rate_schedule(settings)
    for step in (0, 3, 4, 7, 10, 33):
        expected = 0.5 * 0.8 ** np.floor(step * 300 / 1000)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)


def test_ema_follows_tf1_formula_with_warmup():
    variable = tf.Variable([1.0, 2.0])
    ema = training.weight_average([variable], decay=0.9)
    shadow = np.array([1.0, 2.0])
    for count, value in enumerate(([3.0, 0.0], [5.0, 1.0], [-1.0, 4.0]), start=1):
        variable.assign(value)
        ema.update([variable])
        decay = min(0.9, (1 + count) / (10 + count))
        shadow = decay * shadow + (1 - decay) * np.array(value)
        np.testing.assert_allclose(ema.shadows[0].numpy(), shadow, rtol=1e-6)
    ema.copy_to([variable])
    np.testing.assert_allclose(variable.numpy(), shadow, rtol=1e-6)


def test_set_overrides_are_coerced_from_defaults():
    defaults = ModelConfig.settable_defaults("DbofModel")
    parsed = parse_overrides(
        ["dbof_cluster_size=64", "sample_random_frames=false", "moe_l2=1e-6", "dbof_pooling_method=average",
         "batch_size=2e3", "ema_decay=0.999"],
        defaults,
    )
    assert parsed == {"dbof_cluster_size": 64, "sample_random_frames": False, "moe_l2": 1e-6,
                      "dbof_pooling_method": "average", "batch_size": 2000, "ema_decay": 0.999}
    assert type(parsed["moe_l2"]) is float and type(parsed["dbof_cluster_size"]) is int
    with pytest.raises(Yt8mError, match="unknown setting"):
        parse_overrides(["no_such_key=1"], defaults)
    with pytest.raises(Yt8mError, match="integer"):
        parse_overrides(["dbof_cluster_size=1.5"], defaults)
    with pytest.raises(Yt8mError, match="boolean"):
        parse_overrides(["sample_random_frames=maybe"], defaults)
    with pytest.raises(Yt8mError, match="key=value"):
        parse_overrides(["dbof_cluster_size"], defaults)


def test_published_training_settings():
    assert ModelConfig.create("NetVLADModelLF").training.learning_rate_decay == 0.8
    assert ModelConfig.create("NetVLADModelLF").training.batch_size == 80
    starter = ModelConfig.create("DbofModel").training
    assert (starter.batch_size, starter.base_learning_rate, starter.learning_rate_decay) == (1024, 0.01, 0.95)
    assert starter.learning_rate_decay_examples == 4_000_000 and starter.clip_gradient_norm == 1.0
    for name in ("GruModel", "SoftDbofModelLF", "GatedDbofModelLF"):  # WILLOW's scripts: decay 0.9
        assert ModelConfig.create(name).training.learning_rate_decay == 0.9
    assert ModelConfig.create("MixNeXtVladModel").training.learning_rate_decay_examples == 2_500_000
    for name in ("Bert", "BertCross", "BERTMean", "BERTFirst", "BERTCrossMean", "BERTCrossAttn"):  # 2019 9th place
        bert = ModelConfig.create(name).training
        assert (bert.batch_size, bert.base_learning_rate, bert.learning_rate_decay) == (128, 1e-4, 0.9)
        assert bert.learning_rate_decay_examples == 4_000_000


@pytest.mark.parametrize(
    "setting, value",
    [("log_every_steps", 0), ("keep_checkpoints", 0), ("shuffle_buffer", -1), ("checkpoint_every_steps", 0),
     ("base_learning_rate", float("inf")), ("regularization_penalty", float("nan")), ("clip_gradient_norm", -1.0)],
)
def test_settings_no_run_can_use_are_refused_before_any_work(setting, value, tmp_path):
    config = tiny_config("MoeModel", max_steps=1)
    config = config.with_training(**{setting: value})  # past ModelConfig.create's own check
    with pytest.raises(Yt8mError, match=setting):
        training.train(str(tmp_path / "none-*"), tmp_path / "run", config)
    assert not (tmp_path / "run").exists()


def test_label_weights_file(tmp_path):
    (tmp_path / "w.txt").write_text("1\n0.5\n2\n")
    np.save(tmp_path / "w.npy", np.array([1.0, 0.0, 3.0]))
    assert load_label_weights(tmp_path / "w.txt") == [1.0, 0.5, 2.0]
    assert load_label_weights(tmp_path / "w.npy") == [1.0, 0.0, 3.0]
    (tmp_path / "bad.txt").write_text("1 x")
    with pytest.raises(Yt8mError, match="bad.txt"):
        load_label_weights(tmp_path / "bad.txt")
    with pytest.raises(Yt8mError, match="one per class"):
        tiny_config("FrameLevelLogisticModel", label_weights=[1.0, 2.0])


def test_zero_label_weights_leave_those_classes_untrained(data, tmp_path):
    """Classes with weight 0 get no gradient from the loss: their logistic weights stay at init."""
    weights = [1.0] * 5 + [0.0] * 5
    keras.utils.set_random_seed(3)
    config = tiny_config("FrameLevelLogisticModel", max_steps=5, label_weights=weights,
                         clip_gradient_norm=0.0)
    config.hparams["l2_penalty"] = 0.0
    keras.utils.set_random_seed(3)
    initial = [v.numpy().copy() for v in build_model(config).trainable_variables]
    keras.utils.set_random_seed(3)
    training.train(data["train"], tmp_path / "run", config)
    model, _, _ = training.load_trained_model(tmp_path / "run")
    kernel = [v.numpy() for v in model.trainable_variables if v.numpy().ndim == 2][0]
    initial_kernel = [v for v in initial if v.ndim == 2][0]
    assert np.allclose(kernel[:, 5:], initial_kernel[:, 5:])
    assert not np.allclose(kernel[:, :5], initial_kernel[:, :5])


# ----------------------------------------------------------------------------- checkpoints and resume


def test_resume_continues_from_the_latest_checkpoint(data, tmp_path):
    run = tmp_path / "run"
    first = training.train(data["train"], run, tiny_config("DbofModel", max_steps=20, checkpoint_every_steps=10))
    assert (first.start_step, first.step) == (0, 20)
    assert training.latest_checkpoint(run).endswith("ckpt-20")
    saved = ModelConfig.load(run)
    assert saved.model == "DbofModel" and saved.hparams["dbof_cluster_size"] == 32
    model_20, _, step = training.load_trained_model(run)
    assert step == 20
    # Asking for no more steps restores the checkpoint and changes nothing.
    again = training.train(data["train"], run, tiny_config("DbofModel", max_steps=20))
    assert (again.start_step, again.step) == (20, 20)
    restored, _, _ = training.load_trained_model(run)
    for a, b in zip(model_20.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    second = training.train(data["train"], run, tiny_config("DbofModel", max_steps=35))
    assert (second.start_step, second.step) == (20, 35)
    assert training.latest_checkpoint(run).endswith("ckpt-35")
    later, _, _ = training.load_trained_model(run)
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(model_20.weights, later.weights))
    fresh = training.train(data["train"], run, tiny_config("DbofModel", max_steps=5), start_new_model=True)
    assert (fresh.start_step, fresh.step) == (0, 5)
    assert training.latest_checkpoint(run).endswith("ckpt-5")


def test_epochs_are_counted_across_runs(data, tmp_path):
    run = tmp_path / "run"
    one_shard = str(Path(data["root"]) / "train-00000-of-00004.tfrecord")  # 750 videos: 24 batches of 32
    first = training.train(one_shard, run, tiny_config("MoeModel", num_epochs=1))
    assert (first.step, first.epochs_completed) == (24, 1)
    second = training.train(one_shard, run, tiny_config("MoeModel", num_epochs=2))
    assert (second.start_step, second.step, second.epochs_completed) == (24, 48, 2)


def test_train_dir_of_another_model_is_refused(data, tmp_path):
    run = tmp_path / "run"
    training.train(data["train"], run, tiny_config("MoeModel", max_steps=2))
    with pytest.raises(Yt8mError, match=r"config\.json.*MoeModel"):
        training.train(data["train"], run, tiny_config("LogisticModel", max_steps=2))
    with pytest.raises(Yt8mError, match=r"config\.json: this train dir was made for model MoeModel, not LogisticModel"):
        training.resolve_train_config(run, "LogisticModel")
    with pytest.raises(Yt8mError, match=r"config\.json: moe_num_mixtures=2"):
        training.resolve_train_config(run, "MoeModel", set_values=["moe_num_mixtures=4"])
    resumed = training.resolve_train_config(run, None, set_values=["base_learning_rate=0.5"])
    assert resumed.model == "MoeModel" and resumed.training.base_learning_rate == 0.5
    assert training.resolve_train_config(run, "LogisticModel", start_new_model=True).model == "LogisticModel"


def test_tensorboard_scalars_and_progress(data, tmp_path):
    reports = []
    training.train(data["train"], tmp_path / "run", tiny_config("FrameLevelLogisticModel", max_steps=40,
                                                                log_every_steps=20), progress=reports.append)
    assert [r.step for r in reports] == [20, 40]
    assert all(r.examples_per_second > 0 and 0 <= r.gap <= 1 and 0 <= r.hit_at_one <= 1 for r in reports)
    assert reports[-1].examples == 40 * 32
    found = {}
    for path in (tmp_path / "run" / "logs" / "train").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    assert {"loss", "gap", "hit_at_one", "learning_rate", "examples_per_second"} <= set(found)
    assert [step for step, _ in found["loss"]] == [20, 40]
    assert found["loss"][-1][1] == pytest.approx(reports[-1].loss, rel=1e-6)


def test_ema_weights_are_used_for_evaluation(data, tmp_path):
    run = tmp_path / "run"
    training.train(data["train"], run, tiny_config("FrameLevelLogisticModel", max_steps=30, ema_decay=0.9))
    averaged, _, _ = training.load_trained_model(run)
    raw, _, _ = training.load_trained_model(run, use_ema=False)
    reader = tf.train.load_checkpoint(training.latest_checkpoint(run))
    shadows = {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(training.latest_checkpoint(run))
               if name.startswith("ema/shadows/")}
    assert len(shadows) == len(averaged.trainable_variables)
    for variable in averaged.trainable_variables:
        assert any(np.array_equal(variable.numpy(), value) for value in shadows.values())
    assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in zip(averaged.trainable_variables, raw.trainable_variables))


def test_empty_data_is_an_error(tmp_path):
    (tmp_path / "empty.tfrecord").write_bytes(b"")  # a record file without records
    with pytest.raises(Yt8mError, match="no training batches"):
        training.train(str(tmp_path / "empty.tfrecord"), tmp_path / "run", tiny_config("MoeModel", max_steps=3))
    assert not (tmp_path / "run" / "config.json").exists()


# ----------------------------------------------------------------------------- several devices


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from yt8m.classifier import training
    from yt8m.classifier.bundle import build_model
    from yt8m.classifier.config import ModelConfig
    from yt8m.core import FeatureSpec

    data, root = sys.argv[1], sys.argv[2]
    config = ModelConfig.create(
        "FrameLevelLogisticModel", feature_spec=FeatureSpec(sizes=(64, 16), max_frames=10), num_classes=10,
        overrides={"l2_penalty": 0.0},
        training={"batch_size": 32, "max_steps": 3, "base_learning_rate": 0.05, "clip_gradient_norm": 0.05},
    )
    weights, replicas = {}, {}
    for name, devices in (("one", ["/cpu:0"]), ("two", ["/cpu:0", "/cpu:1"])):
        keras.utils.set_random_seed(0)
        replicas[name] = training.make_strategy(devices).num_replicas_in_sync
        training.train(data, f"{root}/{name}", config, devices=devices)
        model, _, _ = training.load_trained_model(f"{root}/{name}")
        weights[name] = [v.numpy() for v in model.trainable_variables]
    keras.utils.set_random_seed(0)
    initial = [v.numpy() for v in build_model(config).trainable_variables]
    print(json.dumps({
        "replicas": replicas,
        "difference": max(float(np.abs(a - b).max()) for a, b in zip(weights["one"], weights["two"])),
        "moved": max(float(np.abs(a - b).max()) for a, b in zip(weights["one"], initial)),
    }))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    """Gradients summed over replicas, then clipped globally: two replicas give the one-device update."""
    make_synthetic_records(tmp_path / "one_batch.tfrecord", 32, NUM_CLASSES, frames=(5, 10), feature_sizes=SIZES)
    completed = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path / "one_batch.tfrecord"), str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["replicas"] == {"one": 1, "two": 2}
    assert result["moved"] > 1e-3  # training changed the weights
    assert result["difference"] < 1e-5


# ----------------------------------------------------------------------------- export


def serialized_records(pattern: str) -> list[bytes]:
    return [data for path in records.list_record_files(pattern) for data in records.iterate_raw_records(path)]


@pytest.mark.parametrize("model", ["DbofModel", "MoeModel"])
def test_export_signatures_agree_with_the_keras_model(model, data, tmp_path):
    run = tmp_path / "run"
    training.train(data["train"], run, tiny_config(model, max_steps=20, ema_decay=0.9))
    out = export_model(run, tmp_path / "export")
    assert trust.is_trusted(out)  # yt8m wrote it: loading it needs no `trust_model`
    metadata = read_export_metadata(out)
    assert metadata["config"]["model"] == model and metadata["step"] == 20
    keras_model, config, _ = training.load_trained_model(run)
    batch = next(RecordSource(data["eval"], config.feature_spec, NUM_CLASSES, config.video_level).iterate(16))
    expected = keras_model((batch["frames"], batch["num_frames"]), training=False).numpy()

    loaded = tf.saved_model.load(str(out))
    serialized = loaded.signatures["serialized"](serialized=tf.constant(serialized_records(data["eval"])[:16]))
    np.testing.assert_allclose(serialized["predictions"].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert [v.decode() for v in serialized["video_id"].numpy()] == [v.decode() for v in batch["video_id"]]
    assert set(loaded.signatures) == {"serving_default", "serialized", "rgb_and_audio"}

    # rgb_and_audio: dequantized (not normalised) features, longer than max_frames, with padding.
    videos = list(records.read_records(data["eval"], rgb_size=SIZES[0], audio_size=SIZES[1]))[:16]
    length = FRAMES + 3
    frames = np.zeros((16, length, sum(SIZES)), np.float32)
    for row, video in enumerate(videos):
        values = np.concatenate([dequantize(video.rgb), dequantize(video.audio)], axis=1)
        frames[row, : len(values)] = values
        frames[row, len(values):] = 7.0  # junk past num_frames must be ignored
    counts = np.array([v.num_frames for v in videos], np.int32)
    output = loaded.signatures["rgb_and_audio"](rgb_and_audio=tf.constant(frames), num_frames=tf.constant(counts[:, None]))  # [N, 1], the starter layout
    np.testing.assert_allclose(output["predictions"].numpy(), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(Yt8mError, match="already exists"):
        export_model(run, out)
    assert export_model(run, out, overwrite=True) == out


def test_export_ships_the_class_names(data, tmp_path):
    run = tmp_path / "run"
    training.train(data["train"], run, tiny_config("MoeModel", max_steps=2))
    names = [f"thing {i}" for i in range(NUM_CLASSES)]
    (tmp_path / "names.txt").write_text("".join(f"{name}\n" for name in names))
    out = export_model(run, tmp_path / "export", vocabulary=tmp_path / "names.txt")
    assert (out / "assets" / "label_map.txt").read_text().splitlines() == names
    assert read_export_metadata(out)["labels"] == {"num_classes": NUM_CLASSES, "label_map": "assets/label_map.txt"}
    (tmp_path / "short.txt").write_text("a\nb\n")
    with pytest.raises(Yt8mError, match="short.txt: has 2 classes"):
        export_model(run, tmp_path / "other", vocabulary=tmp_path / "short.txt")
    plain = export_model(run, tmp_path / "plain")  # 10 classes: no YT8M vocabulary applies
    assert read_export_metadata(plain)["labels"]["label_map"] is None


def test_interrupt_saves_a_checkpoint_first(data, tmp_path):
    def stop(report):
        if report.step == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as interrupted:
        training.train(data["train"], tmp_path / "run", tiny_config("MoeModel", max_steps=100, log_every_steps=10),
                       progress=stop)
    assert training.latest_checkpoint(tmp_path / "run").endswith("ckpt-20")
    note = " ".join(getattr(interrupted.value, "__notes__", []))
    assert "interrupted at step 20" in note and "ckpt-20" in note and "again" in note, note
    assert ModelConfig.load(tmp_path / "run").model == "MoeModel"


TWO_MODELS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from yt8m.classifier import training
    from yt8m.classifier.config import ModelConfig
    from yt8m.core import FeatureSpec

    data, root = sys.argv[1], sys.argv[2]
    devices = ["/cpu:0", "/cpu:1"]
    spec = FeatureSpec(sizes=(64, 16), max_frames=10)
    steps = {}
    for name, model, hparams in (
        ("logistic", "FrameLevelLogisticModel", {}),
        ("dbof", "DbofModel", {"iterations": 4, "dbof_cluster_size": 8, "dbof_hidden_size": 8}),
    ):
        config = ModelConfig.create(model, feature_spec=spec, num_classes=10, overrides=hparams,
                                    training={"batch_size": 16, "max_steps": 3})
        steps[name] = training.train(data, f"{root}/{name}", config, devices=devices).step
    print(json.dumps({"steps": steps, "replicas": training.make_strategy(devices).num_replicas_in_sync,
                      "reused": training.make_strategy(devices) is training.make_strategy(devices)}))
    """
)


@pytest.mark.slow
def test_two_models_train_in_one_process_under_mirrored_strategy(tmp_path):
    """Each MirroredStrategy keys its collectives from 0: a second one for another model in the same
    process fails (shape mismatch); one strategy per device set, reused, trains both."""
    make_synthetic_records(tmp_path / "d.tfrecord", 64, NUM_CLASSES, frames=(5, 10), feature_sizes=SIZES)
    completed = subprocess.run(
        [sys.executable, "-c", TWO_MODELS_SCRIPT, str(tmp_path / "d.tfrecord"), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {"steps": {"logistic": 3, "dbof": 3}, "replicas": 2, "reused": True}


# ----------------------------------------------------------------------------- safety


def test_start_new_model_with_a_bad_init_from_leaves_the_train_dir_intact(data, tmp_path, capsys):
    from yt8m.app.cli import main

    run = tmp_path / "run"
    training.train(data["eval"], run, tiny_config("MoeModel", max_steps=2, log_every_steps=1))
    before = {path.relative_to(run): path.stat().st_mtime_ns for path in run.rglob("*")}
    empty = tmp_path / "empty"
    ModelConfig.load(run).save(empty)  # a config but no checkpoint
    for bad in (run, tmp_path / "missing", empty):
        code = main(["train", "--train-data", data["eval"], "--train-dir", str(run), "--init-from", str(bad),
                     "--start-new-model", "--max-steps", "1"])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
        assert str(bad) in err
    assert {path.relative_to(run): path.stat().st_mtime_ns for path in run.rglob("*")} == before
    assert training.latest_checkpoint(run).endswith("ckpt-2")


def test_an_error_of_the_training_step_is_shown_as_itself_without_a_record_scan(data, tmp_path, monkeypatch):
    """Out of memory in the step is not an input problem: no Python re-scan of the records."""
    scans = []
    monkeypatch.setattr(RecordSource, "find_problem", lambda self: scans.append(self) or None)

    def out_of_memory_step(*args, **kwargs):
        def step(batch):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[1024,300,1152]")

        return step

    monkeypatch.setattr(training, "make_train_step", out_of_memory_step)
    with pytest.raises(tf.errors.ResourceExhaustedError, match="OOM when allocating tensor"):
        training.train(data["eval"], tmp_path / "run", tiny_config("MoeModel", max_steps=3))
    assert scans == []
    assert not (tmp_path / "run" / "config.json").exists()


def test_an_input_error_is_mapped_to_the_record(tmp_path):
    bad = tmp_path / "bad.tfrecord"
    make_synthetic_records(bad, 40, NUM_CLASSES, frames=(5, 10), feature_sizes=(32, 16))  # rgb too small
    with pytest.raises(Yt8mError, match=r"bad\.tfrecord: record 0 .*'mean_rgb' has 32"):
        training.train(str(bad), tmp_path / "run", tiny_config("MoeModel", max_steps=3))


def test_resume_continues_the_epoch_where_the_checkpoint_left_it(data, tmp_path, monkeypatch):
    """The batches of an epoch split over two runs are those of one uninterrupted run, in order."""
    one_shard = str(Path(data["root"]) / "train-00000-of-00004.tfrecord")  # 750 videos: 23 batches of 32 + 1
    seen: list[float] = []
    original = training.make_train_step

    def recording_step(*args, **kwargs):
        step = original(*args, **kwargs)

        def record(batch):
            seen.append(float(np.asarray(batch["frames"]).sum()))
            return step(batch)

        return record

    monkeypatch.setattr(training, "make_train_step", recording_step)
    whole = training.train(one_shard, tmp_path / "whole", tiny_config("MoeModel", num_epochs=1))
    uninterrupted, seen[:] = list(seen), []
    first = training.train(one_shard, tmp_path / "split", tiny_config("MoeModel", max_steps=10))
    second = training.train(one_shard, tmp_path / "split", tiny_config("MoeModel", num_epochs=1))
    assert (first.step, second.start_step, second.step, second.epochs_completed) == (10, 10, whole.step, 1)
    assert second.resume_note == "continuing epoch 1 after its first 10 batches"
    np.testing.assert_allclose(seen, uninterrupted, rtol=1e-6)


def test_a_diverged_run_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    original = training.make_train_step

    def diverging_step(*args, **kwargs):
        step, calls = original(*args, **kwargs), []

        def run(batch):
            calls.append(1)
            loss, predictions, labels = step(batch)
            return (tf.constant(float("nan")) if len(calls) > 5 else loss), predictions, labels

        return run

    monkeypatch.setattr(training, "make_train_step", diverging_step)
    config = tiny_config("MoeModel", max_steps=30, log_every_steps=10, checkpoint_every_steps=5)
    with pytest.raises(Yt8mError, match=r"loss is nan at step 10 \(training diverged\); the last good checkpoint .*ckpt-5 is kept"):
        training.train(data["train"], tmp_path / "run", config)
    assert training.latest_checkpoint(tmp_path / "run").endswith("ckpt-5")


def test_the_train_step_adds_the_models_label_losses(data):
    """MixNeXtVLAD adds each branch's cross-entropy (it needs the labels) to the loss it is trained on."""
    keras.utils.set_random_seed(0)
    config = tiny_config("MixNeXtVladModel", regularization_penalty=1.0)
    model = build_model(config)
    settings = config.training
    strategy = training.make_strategy()
    optimizer = training.make_optimizer(settings)
    optimizer.build(model.trainable_variables)
    batch = next(RecordSource(data["eval"], SPEC, NUM_CLASSES).iterate(32, include_ids=False))
    loss, predictions, labels = training.make_train_step(model, optimizer, strategy, settings)(batch)
    plain = float(np.mean(training.cross_entropy(labels, predictions)))
    # two branches' cross-entropies on 10 classes: far above the L2 terms, which are tiny
    assert float(loss) - plain > 1.0, (float(loss), plain)


def test_out_of_memory_in_eval_and_a_folder_as_predictions_file_are_one_line_errors(data, tmp_path):
    def model(inputs, training=False):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    with pytest.raises(Yt8mError, match=r"out of memory .* batches of 16; lower `batch_size`"):
        list(evaluation.predict_batches(data["eval"], model, tiny_config("MoeModel"), 16))
    with pytest.raises(Yt8mError, match=r"is a folder; `out_path` must name a file"):
        evaluation.predict(data["eval"], tmp_path / "no-model", tmp_path)


def test_a_full_disk_is_one_line_in_train_and_predict(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    training.train(data["eval"], run, tiny_config("MoeModel", max_steps=2))
    full = OSError(28, "No space left on device")

    def no_space(*args, **kwargs):
        raise full

    monkeypatch.setattr(tf.train.CheckpointManager, "save", no_space)
    with pytest.raises(Yt8mError, match=r"cannot save a checkpoint \(.*No space left.*\); the last checkpoint .*ckpt-2 is kept"):
        training.train(data["eval"], run, tiny_config("MoeModel", max_steps=4))
    assert training.latest_checkpoint(run).endswith("ckpt-2")
    monkeypatch.setattr(evaluation, "format_prediction_line", no_space)
    with pytest.raises(Yt8mError, match=r"out\.csv: cannot write the predictions \(No space left on device\)"):
        evaluation.predict(data["eval"], run, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
