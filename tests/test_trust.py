"""Untrusted SavedModels: file, network and Python ops are found in graphs and functions and refused."""

from __future__ import annotations

import pytest
import tensorflow as tf

from yt8m import trust
from yt8m.core import Yt8mError


class _Model(tf.Module):
    def __init__(self, body):
        super().__init__()
        self.scale = tf.Variable(2.0)
        self.body = body

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], autograph=False)
    def serve(self, x):
        return self.body(self, x)


def _save(path, body):
    model = _Model(body)
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    victim = root / "written_by_the_model.txt"

    def writes(self, x):
        with tf.control_dependencies([tf.io.write_file(str(victim), "pwned")]):
            return x * self.scale

    def lists(self, x):
        return x * self.scale + tf.cast(tf.size(tf.io.matching_files("/etc/*")), tf.float32)

    def python(self, x):
        return tf.py_function(lambda t: t * 2, [x], tf.float32)

    def checkpoints(self, x):  # the serving function saves a checkpoint wherever it likes
        saved = tf.raw_ops.SaveV2(prefix=str(root / "dropped"), tensor_names=["x"], shape_and_slices=[""], tensors=[x])
        with tf.control_dependencies([saved]):
            return x * self.scale

    def plain(self, x):
        return tf.nn.relu(x * self.scale)

    return {
        "writes": _save(root / "writes", writes),
        "lists": _save(root / "lists", lists),
        "python": _save(root / "python", python),
        "plain": _save(root / "plain", plain),
        "checkpoints": _save(root / "checkpoints", checkpoints),
        "tf1": _tf1_saved_model(root / "tf1"),
        "victim": victim,
    }


def _tf1_saved_model(path):
    """A TF1 SavedModel with a Saver (SaveV2 / RestoreV2 in the `save/` scope), as the 2017-19 starter code wrote."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant(1.5))
        y = tf.identity(x * w, name="y")
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(path))
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature},
                                                 saver=tf.compat.v1.train.Saver())
            builder.save()
    return path


def test_a_model_that_writes_a_file_is_refused_before_it_runs(models):
    with pytest.raises(Yt8mError) as error:
        trust.check_saved_model(models["writes"])
    message = str(error.value)
    assert "\n" not in message and "WriteFile" in message and "`trust_model=True`" in message
    assert str(models["writes"]) in message
    assert not models["victim"].exists()
    # the refusal is about a real risk: loading and calling the model does write the file
    tf.saved_model.load(str(models["writes"])).signatures["serving_default"](x=tf.constant([1.0]))
    assert models["victim"].read_text() == "pwned"


@pytest.mark.parametrize("name, op", [("lists", "MatchingFiles"), ("python", "EagerPyFunc"), ("checkpoints", "SaveV2")])
def test_file_listing_and_python_ops_are_refused(models, name, op):
    with pytest.raises(Yt8mError, match=op):
        trust.check_saved_model(models[name])
    assert op in {finding.op for finding in trust.inspect_saved_model(models[name])}


@pytest.mark.parametrize("name", ["plain", "tf1"])
def test_standard_checkpoint_ops_pass(models, name):
    findings = trust.inspect_saved_model(models[name])
    assert findings == []
    trust.check_saved_model(models[name])
    trust.check_saved_model(models[name] / "saved_model.pb")


def test_trust_model_and_the_registry(models, tmp_path, monkeypatch):
    monkeypatch.setenv("YT8M_HOME", str(tmp_path / "home"))
    trust.check_saved_model(models["writes"], trust_model=True)
    assert not trust.is_trusted(models["writes"])
    trust.mark_trusted(models["python"], "test: written by yt8m")
    trust.check_saved_model(models["python"])  # in the registry: not inspected
    assert (tmp_path / "home" / trust.REGISTRY_FILE).is_file()
    assert not (models["python"] / trust.REGISTRY_FILE).exists()  # a model folder cannot vouch for itself


def test_a_changed_model_is_no_longer_trusted(models, tmp_path, monkeypatch):
    monkeypatch.setenv("YT8M_HOME", str(tmp_path / "home"))
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "saved_model.pb").write_bytes((models["plain"] / "saved_model.pb").read_bytes())
    trust.mark_trusted(copy, "test")
    (copy / "saved_model.pb").write_bytes((models["writes"] / "saved_model.pb").read_bytes())
    with pytest.raises(Yt8mError, match="WriteFile"):
        trust.check_saved_model(copy)


def test_not_a_saved_model(tmp_path):
    with pytest.raises(Yt8mError, match="not a SavedModel folder"):
        trust.check_saved_model(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"\xff\xff garbage")
    with pytest.raises(Yt8mError, match="not a SavedModel"):
        trust.check_saved_model(tmp_path)
