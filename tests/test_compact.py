"""Compact models: codebooks, quantized and merged bundles through eval / predict / classify / export,
size budgets, the EMA stage's average, the distillation loss, distillation sets and a distilled student."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from yt8m.classifier import evaluation, training
from yt8m.classifier.bundle import ModelBundle, build_model
from yt8m.classifier.compact import distill, ema, merge, quantize, size
from yt8m.classifier.compact.kinds import KIND_EMA_STAGE, KIND_MERGED, KIND_QUANTIZED
from yt8m.classifier.config import ModelConfig
from yt8m.classifier.export import export_model
from yt8m.classifier.metrics import gap
from yt8m.classifier.predictor import load_predictor
from yt8m.classifier.readers import RecordSource
from yt8m.classifier.synthetic import make_synthetic_records, synthetic_videos
from yt8m.core import FeatureSpec, Yt8mError
from yt8m.data import records
from yt8m.data.shards import ShardWriter

CLASSES = 10
MIN_ELEMENTS = 1000  # small models: quantize their larger variables
FAST = {"batch_size": 16, "base_learning_rate": 0.01, "learning_rate_decay": 0.7, "learning_rate_decay_examples": 3200}
NETVLAD = {"iterations": 10, "netvlad_cluster_size": 4, "netvlad_hidden_size": 16}
NEXTVLAD = {"nextvlad_cluster_size": 4, "nextvlad_hidden_size": 16, "groups": 4}


# ----------------------------------------------------------------------------- codebooks


@pytest.mark.parametrize("method", quantize.METHODS)
def test_codebook_round_trip_is_exact(method, tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(60, 50)).astype(np.float32)
    encoded = quantize.encode(values, method, min_elements=MIN_ELEMENTS)
    decoded = encoded.decode()
    assert decoded.dtype == np.float32 and decoded.shape == values.shape
    if method == quantize.METHOD_FLOAT32:
        assert encoded.stored == quantize.STORED_PLAIN and np.array_equal(decoded, values)
    elif method == quantize.METHOD_FLOAT16:
        assert encoded.values.dtype == np.float16 and np.array_equal(decoded, values.astype(np.float16).astype(np.float32))
    else:
        assert encoded.stored == quantize.STORED_CODES and encoded.codes.dtype == np.uint8
        codebook = encoded.codebook
        assert codebook.shape == (256,) and np.all(np.diff(codebook) >= 0)
        np.testing.assert_array_equal(decoded, codebook[encoded.codes])
        # every weight went to its nearest level
        distances = np.abs(values.ravel()[:, None] - codebook[None, :].astype(np.float64))
        np.testing.assert_allclose(np.abs(values.ravel() - decoded.ravel()), distances.min(axis=1), atol=1e-7)
        # codes -> values -> codes is exact: decoded weights find their own level again
        np.testing.assert_array_equal(quantize.nearest_codes(decoded, codebook), encoded.codes)
        if method != quantize.METHOD_QUANTILE:  # (quantiles of the decoded weights are other levels)
            np.testing.assert_array_equal(quantize.encode(decoded, method, min_elements=MIN_ELEMENTS).decode(), decoded)
    # stored and read back: the same arrays
    quantize.save_encoded(tmp_path, [encoded], ["m/layer/kernel"], {"method": method})
    (back,) = quantize.load_encoded(tmp_path)
    np.testing.assert_array_equal(back.decode(), decoded)


def test_codebooks_follow_the_seed():
    values = np.random.default_rng(1).normal(size=20_000).astype(np.float32)
    uniform = quantize.uniform_codebook(values)
    assert uniform[0] == values.min() and uniform[-1] == values.max()
    np.testing.assert_allclose(np.diff(uniform), (values.max() - values.min()) / 255, rtol=1e-3)
    quantile = quantize.quantile_codebook(values)
    np.testing.assert_allclose(quantile, np.quantile(values.astype(np.float64), np.linspace(0, 1, 256)), rtol=1e-6)
    # the seed's threshold: MORE than 17000 elements
    assert quantize.encode(np.zeros(17_000, np.float32), "uniform8").stored == quantize.STORED_PLAIN
    assert quantize.encode(np.ones(17_001, np.float32), "uniform8").stored == quantize.STORED_CODES
    assert quantize.encode(np.ones(20_000, np.int64), "uniform8").stored == quantize.STORED_PLAIN
    assert quantize.SEED_METHOD_NAMES["quant_uniform"] == "uniform8"
    with pytest.raises(Yt8mError, match="unknown quantization"):
        quantize.encode(values, "int4")


# ----------------------------------------------------------------------------- bundles


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict:
    """Two tiny trained models on YT8M-sized synthetic features (NetVLAD 10 frames, NeXtVLAD 8), quantized and merged."""
    root = tmp_path_factory.mktemp("compact")
    make_synthetic_records(root / "train.tfrecord", 160, CLASSES, frames=(5, 12), seed=1)
    make_synthetic_records(root / "eval.tfrecord", 48, CLASSES, frames=(5, 12), seed=2)
    out = {"root": root, "train": str(root / "train.tfrecord"), "eval": str(root / "eval.tfrecord")}
    for name, model, hparams, frames in (("vlad", "NetVLADModelLF", NETVLAD, 10), ("next", "NeXtVLADModel", NEXTVLAD, 8)):
        config = ModelConfig.create(
            model, feature_spec=FeatureSpec(max_frames=frames), num_classes=CLASSES, overrides=hparams,
            training={**FAST, "max_steps": 12, "ema_decay": 0.9},
        )
        training.train(out["train"], root / name, config)
        out[name] = root / name
    out["vlad_q"] = quantize.quantize_bundle(root / "vlad", root / "vlad_q", "uniform8", min_elements=MIN_ELEMENTS).out_dir
    out["merged"] = merge.merge([out["vlad_q"], out["next"]], root / "merged", [3.0, 1.0], export=False).out_dir
    return out


def eval_batch(bundles, spec, count=24) -> dict:
    return next(RecordSource(bundles["eval"], spec, CLASSES).iterate(count))


def test_quantized_bundle_stores_codes_and_loads_as_any_bundle(bundles):
    bundle = ModelBundle.open(bundles["vlad_q"])
    assert bundle.kind == KIND_QUANTIZED
    manifest = quantize.read_manifest(bundle.path)
    assert manifest["method"] == "uniform8" and manifest["step"] == 12
    assert any(entry["stored"] == "codes" for entry in manifest["variables"])
    loaded, source = bundle.load(), ModelBundle.open(bundles["vlad"]).load()
    assert loaded.step == 12
    # the scores are those of the float model with its weights replaced by their decoded codes
    model = build_model(source.config)
    for variable, item in zip(quantize.float_variables(model), quantize.load_encoded(bundle.path)):
        variable.assign(item.decode())
    batch = eval_batch(bundles, source.config.feature_spec)
    expected = model((batch["frames"], batch["num_frames"]), training=False).numpy()
    np.testing.assert_allclose(loaded.scores(batch["frames"], batch["num_frames"]), expected, atol=1e-6)
    float_scores = source.scores(batch["frames"], batch["num_frames"])
    assert np.abs(expected - float_scores).max() < 0.05  # close to, not equal to, the float model
    # the inner Keras model's own float weights are never read: built zero-filled, not drawn
    inner = quantize.float_variables(loaded.model.keras_model)
    assert inner and all(not np.any(variable.numpy()) for variable in inner)
    with pytest.raises(Yt8mError, match="already a quantized bundle"):
        quantize.quantize_bundle(bundles["vlad_q"], bundles["root"] / "twice")
    with pytest.raises(Yt8mError, match="already exists"):
        quantize.quantize_bundle(bundles["vlad"], bundles["vlad_q"])


def test_merged_scores_are_the_weighted_mean_of_the_members(bundles):
    merged = ModelBundle.open(bundles["merged"])
    assert merged.kind == KIND_MERGED and merged.config.feature_spec.max_frames == 10
    assert [m["method"] for m in merged.config.hparams["members"]] == ["uniform8", "float32"]
    batch = eval_batch(bundles, merged.config.feature_spec)
    frames, counts = batch["frames"], batch["num_frames"]
    vlad = ModelBundle.open(bundles["vlad_q"]).load().scores(frames, counts)
    nxt = ModelBundle.open(bundles["next"]).load().scores(frames[:, :8], np.minimum(counts, 8))  # its own 8 frames
    np.testing.assert_allclose(merged.load().scores(frames, counts), 0.75 * vlad + 0.25 * nxt, atol=1e-5)


def test_quantized_and_merged_bundles_through_eval_and_predict(bundles, tmp_path):
    for name in ("vlad_q", "merged"):
        metrics = evaluation.evaluate(bundles["eval"], bundles[name], write_summaries=False)
        assert metrics["num_examples"] == 48 and 0 < metrics["gap"] <= 1
        result = evaluation.predict(bundles["eval"], bundles[name], tmp_path / f"{name}.csv", scores_path=tmp_path / f"{name}.npz")
        assert result.num_videos == 48
        saved = np.load(tmp_path / f"{name}.npz")
        loaded = ModelBundle.open(bundles[name]).load()
        batch = next(RecordSource(bundles["eval"], loaded.config.feature_spec, CLASSES).iterate(48))
        np.testing.assert_allclose(saved["predictions"], loaded.scores(batch["frames"], batch["num_frames"]), atol=1e-5)
        assert gap(saved["predictions"], saved["labels"]) == pytest.approx(metrics["gap"], abs=1e-6)


def test_quantized_and_merged_bundles_export_the_serving_signatures(bundles, tmp_path):
    # the quantized bundle with `export_model`, the merged one as `merge` writes it (under export/)
    merge.merge([bundles["vlad_q"], bundles["next"]], tmp_path / "merged", [3.0, 1.0])
    exports = {"vlad_q": export_model(bundles["vlad_q"], tmp_path / "export_q"), "merged": tmp_path / "merged" / "export"}
    serialized = [d for p in records.list_record_files(bundles["eval"]) for d in records.iterate_raw_records(p)][:16]
    for name, directory in exports.items():
        saved_model = tf.saved_model.load(str(directory))
        assert set(saved_model.signatures) == {"serving_default", "serialized", "rgb_and_audio"}
        out = saved_model.signatures["serialized"](serialized=tf.constant(serialized))
        loaded = ModelBundle.open(bundles[name]).load()
        batch = next(RecordSource(bundles["eval"], loaded.config.feature_spec, CLASSES).iterate(16))
        np.testing.assert_allclose(out["predictions"].numpy(), loaded.scores(batch["frames"], batch["num_frames"]), atol=1e-5)
        # the codes travel as uint8: no float copy of the quantized weights in the SavedModel
        dtypes = tf.train.load_checkpoint(str(directory / "variables" / "variables")).get_variable_to_dtype_map()
        assert tf.uint8 in dtypes.values()


def test_quantized_and_merged_bundles_as_classify_models(bundles):
    """`classify`'s model side: the predictor of a quantized or merged bundle scores extracted videos as the bundle does."""
    from yt8m.classification import check_model_features, load_model

    videos = list(records.read_records(bundles["eval"]))[:5]
    for name in ("vlad_q", "merged"):
        predictor = load_model(bundles[name])
        check_model_features(predictor)  # rgb 1024 + audio 128: what the extractor makes
        loaded = ModelBundle.open(bundles[name]).load()
        batch = next(RecordSource(bundles["eval"], loaded.config.feature_spec, CLASSES).iterate(5))
        np.testing.assert_allclose(predictor.predict(videos), loaded.scores(batch["frames"], batch["num_frames"]), atol=1e-5)
        windows = predictor.predict_segments(videos[:1])[0]
        assert len(windows) == -(-videos[0].num_frames // 5) and windows[0].scores.shape == (CLASSES,)


@pytest.mark.slow
def test_quantized_and_merged_bundles_classify_video_files(bundles, tmp_path):
    from yt8m.classification import classify_files
    from yt8m.extractor.backbones import load_feature_models
    from yt8m.extractor.synthetic import write_test_video

    clip = write_test_video(tmp_path / "clip.mp4", 3.0, colors=[(30, 200, 30)], motion="right", audio="sine")
    feature_models = load_feature_models("random")
    for name in ("vlad_q", "merged"):
        predictor = load_predictor(bundles[name])
        outcome = classify_files([clip], predictor, weights="random", feature_models=feature_models, thumbnails=False, top_k=3)
        assert not outcome.errors and len(outcome.results[0].labels) == 3
        scores = [label.score for label in outcome.results[0].labels]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


def test_size_report_and_budget(bundles, tmp_path):
    trained = size.size_report(bundles["vlad"])
    quantized = size.size_report(bundles["vlad_q"])
    assert trained.kind == "trained" and quantized.kind == KIND_QUANTIZED
    assert trained.parameters == quantized.parameters > 0
    names = {part.name for part in trained.parts}
    assert {"optimizer state and counters", "ema (moving averages)"} <= names
    weights = lambda report: sum(p.bytes for p in report.parts if p.parameters)  # noqa: E731
    assert weights(quantized) < 0.6 * weights(trained)  # the large variables: 1 byte per weight
    assert sum(p.bytes for p in quantized.parts) == quantized.total_bytes
    with pytest.raises(Yt8mError, match=r"exceeds the budget of 1.00 KB \(largest parts: .+\)"):
        size.size_report(bundles["merged"], "1KB").check_budget()
    assert size.parse_size("1GB") == 10**9 and size.parse_size("1GiB") == 2**30 and size.parse_size("2.5MB") == 2_500_000
    with pytest.raises(Yt8mError, match="not a size"):
        size.parse_size("big")
    # export under a budget: refused with the largest parts named, nothing left behind
    with pytest.raises(Yt8mError, match="largest parts: graph"):
        size.export_within_budget(bundles["vlad_q"], tmp_path / "small", "10KB")
    assert not (tmp_path / "small").exists() and not list(tmp_path.glob(".small*"))
    report = size.export_within_budget(bundles["vlad_q"], tmp_path / "fits", "1GB")
    assert report.within_budget and (tmp_path / "fits" / "saved_model.pb").is_file()
    exported = size.size_report(tmp_path / "fits")
    assert exported.kind == "export" and exported.total_bytes == report.total_bytes
    assert {p.name for p in exported.parts} >= {size.GRAPH_PART, size.ASSETS_PART}


def test_merge_refuses_members_whose_inputs_differ(bundles, tmp_path):
    other = tmp_path / "other"
    config = ModelConfig.create("FrameLevelLogisticModel", feature_spec=FeatureSpec(max_frames=10), num_classes=CLASSES + 1,
                                training={**FAST, "max_steps": 1})
    make_synthetic_records(tmp_path / "t.tfrecord", 16, CLASSES + 1, frames=(5, 10), seed=4)
    training.train(str(tmp_path / "t.tfrecord"), other, config)
    with pytest.raises(Yt8mError, match="cannot be merged.*classes"):
        merge.merge([bundles["vlad"], other], tmp_path / "m")
    with pytest.raises(Yt8mError, match="2 or more"):
        merge.merge([bundles["vlad"]], tmp_path / "m")
    with pytest.raises(Yt8mError, match="weights"):
        merge.merge([bundles["vlad"], bundles["next"]], tmp_path / "m", [1.0, -1.0])
    assert not (tmp_path / "m").exists()


# ----------------------------------------------------------------------------- EMA stage


def test_ema_stage_average_follows_the_seed(bundles):
    model = ModelBundle.open(bundles["vlad"]).load().model
    average = ema.stage_average(model, ema.halflife_decay(4))
    covered = ema.stage_variables(model)
    assert len(covered) == len(quantize.float_variables(model)) > len(model.trainable_variables)  # BN statistics too
    before = [v.numpy().copy() for v in covered]
    moved = [b + 1.0 for b in before]
    for variable, value in zip(covered, moved):
        variable.assign(value)
    average.update()  # first update: no warm-up, decay 1 - 1/4
    for shadow, old, new in zip(average.shadows, before, moved):
        np.testing.assert_allclose(shadow.numpy(), 0.75 * old + 0.25 * new, rtol=1e-6, atol=1e-6)
    assert ema.halflife_decay(2000) == pytest.approx(0.9995)
    with pytest.raises(Yt8mError, match="ema_halflife"):
        ema.halflife_decay(1)


def test_ema_stage_bundle_loads_the_averages_of_every_weight(bundles, tmp_path):
    source = ModelBundle.open(bundles["vlad"])
    config = ema.as_ema_stage(source.config, halflife=10)
    assert config.kind == KIND_EMA_STAGE and config.training.ema_decay == pytest.approx(0.9)
    model = build_model(config)
    average = ema.stage_average(model, config.training.ema_decay)
    for shadow in average.shadows:
        shadow.assign(tf.fill(shadow.shape, 0.5))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, ema=average), str(tmp_path / "stage"), 1,
                                         checkpoint_name="ckpt")
    manager.save(checkpoint_number=7)
    config.save(tmp_path / "stage")
    loaded = ModelBundle.open(tmp_path / "stage").load()
    assert loaded.step == 7
    assert all(np.all(v.numpy() == 0.5) for v in quantize.float_variables(loaded.model))  # BN statistics included
    with pytest.raises(Yt8mError, match="already holds a model"):
        ema.check_ema_source(bundles["vlad"], bundles["next"])


def test_ema_stage_training_averages_every_weight_without_warm_up(bundles, tmp_path):
    """`train(ema_from=...)`: a new train dir seeded with the source's weights; with a half-life of a
    million steps the averages (batch-norm statistics included) barely leave the source's values
    after a few steps, while the trained weights do (TF1's warm-up would have let them follow)."""
    stage = tmp_path / "stage"
    config = training.resolve_train_config(stage, None, init_from=bundles["vlad"], training={**FAST, "max_steps": 4})
    result = training.train(bundles["train"], stage, config, ema_from=bundles["vlad"], ema_halflife=1e6)
    assert result.step == 4 and result.init is not None and result.init.source == Path(bundles["vlad"])
    bundle = ModelBundle.open(stage)
    assert bundle.kind == KIND_EMA_STAGE and bundle.config.training.ema_decay == pytest.approx(1 - 1e-6)
    source = quantize.float_variables(ModelBundle.open(bundles["vlad"]).load().model)
    averaged = quantize.float_variables(bundle.load().model)
    raw_model = bundle.load(use_ema=False).model
    raw, trainable = quantize.float_variables(raw_model), {id(v) for v in raw_model.trainable_variables}
    moved = {"weights": 0, "statistics": 0}
    for s, a, r in zip(source, averaged, raw):
        np.testing.assert_allclose(a.numpy(), s.numpy(), atol=1e-4, err_msg=a.path)
        if np.abs(r.numpy() - s.numpy()).max() > 1e-3:
            moved["weights" if id(r) in trainable else "statistics"] += 1
    assert moved["weights"] > 0 and moved["statistics"] > 0, moved  # batch-norm moving statistics trained too
    # resumed without `ema_from`: the train dir stays an EMA stage
    again = training.resolve_train_config(stage, None, training={"max_steps": 6})
    assert again.kind == KIND_EMA_STAGE
    assert training.train(bundles["train"], stage, again).step == 6
    with pytest.raises(Yt8mError, match="already holds a model"):
        training.train(bundles["train"], bundles["next"], config, ema_from=bundles["vlad"])
    with pytest.raises(Yt8mError, match="cannot be combined"):
        training.train(bundles["train"], tmp_path / "x", config, ema_from=bundles["vlad"], init_from=bundles["vlad"])


# ----------------------------------------------------------------------------- distillation


def reference_loss(labels, predictions, teacher, lam, weights=None):
    eps = 1e-5

    def ce(t):
        return -(t * np.log(predictions + eps) + (1 - t) * np.log(1 - predictions + eps))

    loss = lam * ce(teacher) + (1 - lam) * ce(labels)
    return (loss * (1 if weights is None else weights)).sum(axis=1)


def test_distillation_loss_equals_the_numpy_reference():
    rng = np.random.default_rng(3)
    labels = (rng.random((6, 9)) < 0.3).astype(np.float32)
    predictions = rng.random((6, 9)).astype(np.float32)
    teacher = rng.random((6, 9)).astype(np.float32)
    weights = rng.random(9).astype(np.float32)
    for lam in (0.0, 0.3, 0.5, 1.0):
        got = distill.distillation_loss(labels, predictions, teacher, lam).numpy()
        np.testing.assert_allclose(got, reference_loss(labels, predictions, teacher, lam), rtol=1e-5)
    got = distill.distillation_loss(labels, predictions, teacher, 0.5, weights).numpy()
    np.testing.assert_allclose(got, reference_loss(labels, predictions, teacher, 0.5, weights), rtol=1e-5)
    # lambda 0 is the starter's loss
    np.testing.assert_allclose(
        distill.distillation_loss(labels, predictions, teacher, 0.0).numpy(),
        training.cross_entropy(labels, predictions).numpy(), rtol=1e-6,
    )


def test_distillation_set_holds_the_teachers_top_k(bundles, tmp_path):
    result = distill.write_distill_data(bundles["eval"], [bundles["vlad_q"], bundles["next"]], tmp_path / "set",
                                        weights=[3, 1], top_k=4)
    assert result.num_videos == 48 and result.bytes_added < result.full_vector_bytes
    teacher = ModelBundle.open(bundles["merged"]).load()  # the same ensemble, merged
    source = distill.DistilledRecordSource(str(tmp_path / "set"), teacher.config.feature_spec, CLASSES)
    batch = next(source.iterate(48))
    expected = teacher.scores(batch["frames"], batch["num_frames"])
    for row, scores in zip(batch[distill.TEACHER], expected):
        top = np.argsort(-scores, kind="stable")[:4]
        assert set(np.flatnonzero(row)) == set(top)
        np.testing.assert_allclose(row[top], scores[top], rtol=1e-3)  # float16
    # the records are still ordinary YT8M records
    again = list(records.read_records(str(tmp_path / "set")))
    original = list(records.read_records(bundles["eval"]))
    assert [v.video_id for v in again] == [v.video_id for v in original]
    assert all(np.array_equal(a.rgb, b.rgb) and a.labels == b.labels for a, b in zip(again, original))
    with pytest.raises(Yt8mError, match="already exists"):
        distill.write_distill_data(bundles["eval"], [bundles["next"]], tmp_path / "set")


def noisy_copy(path: Path, videos, drop: float, seed: int) -> None:
    """Write `videos` with each label dropped with probability `drop` and a wrong one added instead."""
    rng = np.random.default_rng(seed)
    writer = ShardWriter(path)
    for video in videos:
        labels = [c for c in video.labels if rng.random() >= drop]
        if len(labels) < len(video.labels):
            labels.append(int(rng.integers(CLASSES)))
        writer.write(replace(video, labels=sorted(set(labels))))
    writer.close()


@pytest.mark.slow
def test_distilled_student_beats_the_student_on_labels_alone(tmp_path):
    """The student's labels are noisy (60 % of the true labels replaced by random ones); a teacher
    trained on clean labels knows better: distilled from it, the student must do better on clean data."""
    sizes = (32, 8)
    spec = FeatureSpec(sizes=sizes, max_frames=10)
    kwargs = dict(frames=(5, 10), feature_sizes=sizes)
    make_synthetic_records(tmp_path / "clean.tfrecord", 800, CLASSES, seed=1, **kwargs)
    make_synthetic_records(tmp_path / "eval.tfrecord", 200, CLASSES, seed=2, **kwargs)
    noisy_copy(tmp_path / "noisy.tfrecord", synthetic_videos(400, CLASSES, seed=3, **kwargs), drop=0.6, seed=0)

    def config(steps: int):
        return ModelConfig.create("FrameLevelLogisticModel", feature_spec=spec, num_classes=CLASSES,
                                  training={**FAST, "batch_size": 32, "max_steps": steps, "log_every_steps": 1000})

    noisy = str(tmp_path / "noisy.tfrecord")
    training.train(str(tmp_path / "clean.tfrecord"), tmp_path / "teacher", config(150))
    training.train(noisy, tmp_path / "labels", config(120))
    # the teacher scored in the input pipeline ...
    teach = distill.resolve_distillation([str(tmp_path / "teacher")], 0.9)
    training.train(noisy, tmp_path / "distilled", config(120), distill=teach)
    # ... and its top 3 classes stored in a distillation set of the same records
    distill.write_distill_data(noisy, [tmp_path / "teacher"], tmp_path / "set", top_k=3)
    stored = distill.resolve_distillation("records", 0.9)
    training.train(str(tmp_path / "set"), tmp_path / "stored", config(120), distill=stored)
    scores = {name: evaluation.evaluate(str(tmp_path / "eval.tfrecord"), tmp_path / name, write_summaries=False)["gap"]
              for name in ("teacher", "labels", "distilled", "stored")}
    print(scores)
    assert scores["teacher"] > scores["labels"] + 0.02, scores  # the task is built so that the teacher knows more
    assert scores["distilled"] > scores["labels"] + 0.02, scores
    assert scores["stored"] > scores["labels"] + 0.02, scores


def test_cli_quantize_merge_size(bundles, tmp_path, capsys):
    from yt8m.app.cli import main

    assert main(["quantize", "--train-dir", str(bundles["next"]), "--method", "float16", "-o", str(tmp_path / "half"),
                 "--min-elements", str(MIN_ELEMENTS), "--eval-data", bundles["eval"]]) == 0
    out = capsys.readouterr().out
    assert "with float16" in out and "parameters" in out and "bytes on disk" in out
    before, after = (evaluation.evaluate(bundles["eval"], d, write_summaries=False)["gap"] for d in (bundles["next"], tmp_path / "half"))
    assert f"GAP {before:.4f} -> {after:.4f}" in out
    assert quantize.read_manifest(tmp_path / "half")["method"] == "float16"
    assert main(["merge", str(bundles["vlad_q"]), str(tmp_path / "half"), "--weights", "1,1", "--no-export",
                 "-o", str(tmp_path / "m")]) == 0
    assert [e["weight"] for e in ModelBundle.open(tmp_path / "m").config.hparams["members"]] == [0.5, 0.5]
    capsys.readouterr()
    assert main(["size", str(tmp_path / "m"), "--max-size", "1GB"]) == 0
    assert "members/00" in capsys.readouterr().out
    assert main(["size", str(tmp_path / "m"), "--max-size", "2KB"]) == 1
    assert "exceeds the budget" in capsys.readouterr().err
    assert main(["quantize", "--train-dir", str(bundles["next"]), "--method", "int4", "-o", str(tmp_path / "x")]) == 1
    assert "--method" in capsys.readouterr().err and not (tmp_path / "x").exists()
    # export under a budget: refused naming the largest parts, nothing left behind; within it, written
    assert main(["export", "--train-dir", str(bundles["vlad_q"]), "-o", str(tmp_path / "e"), "--max-size", "10KB"]) == 1
    assert "largest parts" in capsys.readouterr().err and not (tmp_path / "e").exists()
    assert main(["export", "--train-dir", str(bundles["vlad_q"]), "-o", str(tmp_path / "e"), "--max-size", "1GB"]) == 0
    assert "of the 1.00 GB budget" in capsys.readouterr().out and (tmp_path / "e" / "saved_model.pb").is_file()


def test_cli_train_ema_stage(bundles, tmp_path, capsys):
    from yt8m.app.cli import main

    stage = tmp_path / "stage"
    args = ["train", "--train-data", bundles["train"], "--train-dir", str(stage), "--batch-size", "16", "--max-steps", "3"]
    assert main(args + ["--ema-from", str(bundles["vlad"]), "--ema-halflife", "4"]) == 0
    out = capsys.readouterr().out
    assert "EMA stage of" in out and "decay 0.75" in out and f"initialised from {bundles['vlad']}" in out
    config = ModelBundle.open(stage).config
    assert config.kind == KIND_EMA_STAGE and config.model == "NetVLADModelLF" and config.training.ema_decay == 0.75
    assert main(["eval", "--eval-data", bundles["eval"], "--train-dir", str(stage), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_examples"] == 48
    assert main(args + ["--ema-from", str(bundles["vlad"]), "--ema-decay", "0.9"]) == 1
    assert "--ema-halflife" in capsys.readouterr().err
    assert main(["train", "--train-data", bundles["train"], "--train-dir", str(tmp_path / "q"), "--ema-from", str(bundles["vlad_q"])]) == 1
    assert "--ema-from needs a trained bundle" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_distill_from_teachers_and_from_records(bundles, tmp_path, capsys):
    from yt8m.app.cli import main

    student = ["--model", "NeXtVLADModel", "--max-frames", "8", "--num-classes", str(CLASSES), "--batch-size", "16",
               "--max-steps", "2"] + [f"--set={key}={value}" for key, value in NEXTVLAD.items()]
    # teachers scored in the input pipeline: a quantized NetVLAD of 10 frames teaching an 8-frame student
    assert main(["train", "--train-data", bundles["train"], "--train-dir", str(tmp_path / "a"), *student,
                 "--distill-from", f"{bundles['vlad_q']},{bundles['next']}", "--distill-lambda", "0.7"]) == 0
    assert "distilled from" in capsys.readouterr().out and ModelBundle.open(tmp_path / "a").load().step == 2
    # a distillation set, then training on its stored scores
    assert main(["distill-data", "--input-data", bundles["train"], "--teacher", str(bundles["vlad_q"]),
                 "-o", str(tmp_path / "set"), "--top-k", "3"]) == 0
    assert "wrote 160 videos" in capsys.readouterr().out
    assert main(["train", "--train-data", str(tmp_path / "set"), "--train-dir", str(tmp_path / "b"), *student,
                 "--distill-from", "records"]) == 0
    assert ModelBundle.open(tmp_path / "b").load().step == 2
    capsys.readouterr()
    # ordinary records have no stored scores: one line naming the record
    assert main(["train", "--train-data", bundles["train"], "--train-dir", str(tmp_path / "c"), *student,
                 "--distill-from", "records"]) == 1
    err = capsys.readouterr().err
    assert "record 0 lacks the teacher scores" in err and "Traceback" not in err
    assert main(["train", "--train-data", bundles["train"], "--train-dir", str(tmp_path / "d"), *student,
                 "--distill-from", str(bundles["vlad"]), "--distill-lambda", "1.5"]) == 1
    assert "--distill-lambda must be in [0, 1]" in capsys.readouterr().err
