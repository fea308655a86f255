"""`yt8m extract --runner DirectRunner`: Beam's records are the local run's, byte for byte, id by id."""

from __future__ import annotations

import csv
import dataclasses
import tempfile
from pathlib import Path

import pytest

beam = pytest.importorskip("apache_beam", reason="apache_beam is not installed (the `beam` extra)")

from apache_beam.io.filesystem import FileMetadata, MatchResult  # noqa: E402
from apache_beam.io.localfilesystem import LocalFileSystem  # noqa: E402

from yt8m.app.cli import main  # noqa: E402
from yt8m.extractor import beam as yt8m_beam  # noqa: E402
from yt8m.extractor.job import ExtractOptions  # noqa: E402
from yt8m.extractor.synthetic import write_test_video  # noqa: E402

TEST_SCHEME = "yt8mtest"


class _FolderFileSystem(LocalFileSystem):
    """`yt8mtest://NAME` is `root/NAME`: a stand-in for a cloud file system (gs://, s3://)."""

    root: Path = Path("/nonexistent")

    @classmethod
    def scheme(cls) -> str:
        return TEST_SCHEME

    def _local(self, uri: str) -> str:
        prefix = f"{TEST_SCHEME}://"  # the base class calls back with local paths too
        return str(self.root / uri[len(prefix):]) if uri.startswith(prefix) else uri

    def _uri(self, path: str) -> str:
        return f"{TEST_SCHEME}://{Path(path).relative_to(self.root).as_posix()}"

    def match(self, patterns, limits=None):
        results = super().match([self._local(pattern) for pattern in patterns], limits)
        return [
            MatchResult(pattern, [FileMetadata(self._uri(m.path), m.size_in_bytes, m.last_updated_in_seconds)
                                  for m in result.metadata_list])
            for pattern, result in zip(patterns, results)
        ]

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)

    def create(self, path, *args, **kwargs):
        return super().create(self._local(path), *args, **kwargs)

    def exists(self, path) -> bool:
        return super().exists(self._local(path))

    def delete(self, paths) -> None:
        super().delete([self._local(path) for path in paths])


@pytest.fixture(scope="module")
def random_models():
    from yt8m.extractor.backbones import load_feature_models

    return load_feature_models(weights="random")


@pytest.fixture
def loader(random_models, monkeypatch):
    """Both runs get the module's random models (built once) through the real loading call."""
    from yt8m.extractor import backbones, job

    calls: list[dict] = []

    def load(**kwargs):
        calls.append(kwargs)
        assert kwargs["weights"] == "random"
        if not kwargs["audio"]:
            return dataclasses.replace(random_models, vggish=None, audio_pca=None)
        return random_models

    monkeypatch.setattr(backbones, "load_feature_models", load)  # what the Beam workers call
    monkeypatch.setattr(job, "load_feature_models", load)  # what the local job calls
    return calls


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Three short clips in two class folders (one without audio) and one file that is no video."""
    folder = tmp_path_factory.mktemp("clips")
    write_test_video(folder / "birds" / "tone.mp4", 3.0, audio="sine", motion="right")
    write_test_video(folder / "birds" / "quiet.mp4", 2.0, audio="silent", motion="left")
    write_test_video(folder / "cars" / "mute.mp4", 2.0, audio=None, motion="down")
    (folder / "cars" / "broken.mp4").write_bytes(b"this is not a video")
    return folder


def _records(pattern: Path) -> dict[str, bytes]:
    """Raw record bytes per id, read and parsed with plain TensorFlow (no yt8m reader)."""
    import tensorflow as tf

    found: dict[str, bytes] = {}
    files = sorted(tf.io.gfile.glob(str(pattern)))
    assert files, f"no files match {pattern}"
    for data in tf.data.TFRecordDataset(files):
        raw = data.numpy()
        context, lists = tf.io.parse_single_sequence_example(
            raw,
            context_features={"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)},
            sequence_features={"rgb": tf.io.FixedLenSequenceFeature([], tf.string),
                               "audio": tf.io.FixedLenSequenceFeature([], tf.string)},
        )
        assert lists["rgb"].shape[0] == lists["audio"].shape[0] > 0
        found[context["id"].numpy().decode()] = raw
    return found


def _errors(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _extract(args: list[str], capsys, after: tuple[str, ...] = ()) -> tuple[int, str, str]:
    # Batch size 1 in both runs: which batches form depends on the decode threads' timing, and on
    # some CPUs the kernels may round a frame differently in batches of different sizes. Each frame
    # then runs alone (Backbone pads a batch of one to two), so the comparison is exact whatever
    # the timing and the CPU.
    code = main(["extract", *args, "--weights", "random", "--batch-size", "1", *after])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow  # builds the random models (10-30 s on 2 shared cores), then two runs
def test_beam_records_match_local_extraction(clips, tmp_path, loader, capsys):
    local_out = tmp_path / "local" / "feat.tfrecord"
    code, _, err = _extract([str(clips), "-o", str(local_out), "--labels-from-folders"], capsys)
    assert code == 1 and "broken.mp4" in err  # the bad file fails, the others are written

    beam_out = tmp_path / "beam" / "feat.tfrecord"
    code, out, err = _extract([str(clips), "-o", str(beam_out), "--labels-from-folders", "--runner", "DirectRunner",
                               "--beam-option", "direct_num_workers=1"], capsys)
    assert code == 1, err  # non-zero: one file failed
    assert "failed: 1" in err and "broken.mp4" in err
    assert "RANDOM" in err
    assert [call["weights"] for call in loader] == ["random", "random"]

    shards = sorted(p.name for p in beam_out.parent.glob("feat-*-of-*.tfrecord"))
    assert shards == ["feat-00000-of-00001.tfrecord"]
    local, distributed = _records(local_out), _records(beam_out.parent / "feat-*-of-*.tfrecord")
    assert sorted(distributed) == sorted(local) == ["mute", "quiet", "tone"]
    for video_id, data in local.items():
        assert distributed[video_id] == data, f"record {video_id!r} differs from local extraction"
    # the label map is written once, by the driver, as the local run writes it
    assert (beam_out.parent / "feat.label_map.txt").read_text() == (local_out.parent / "feat.label_map.txt").read_text()

    rows = _errors(beam_out.parent / "feat-errors.csv")
    assert rows[0] == ["path", "reason"]
    assert [Path(row[0]).name for row in rows[1:]] == ["broken.mp4"] and rows[1][1]
    assert not list(beam_out.parent.glob("beam-temp-*")), "Beam's temporary files were left behind"


def test_errors_csv_runs_the_failed_files_again(clips, tmp_path, loader, capsys):
    """Re-running from OUT-errors.csv (after fixing the file) extracts exactly the failed files."""
    videos = tmp_path / "videos"
    write_test_video(videos / "ok.mp4", 2.0, audio="sine")
    broken = videos / "later.mp4"
    broken.write_bytes(b"truncated")
    first = tmp_path / "first.tfrecord"
    code, _, err = _extract([str(videos), "-o", str(first), "--runner", "DirectRunner"], capsys)
    assert code == 1 and "later.mp4" in err
    errors_csv = tmp_path / "first-errors.csv"
    assert [row[0] for row in _errors(errors_csv)[1:]] == [str(broken)]

    write_test_video(broken, 2.0, audio=None)  # the file is repaired
    second = tmp_path / "second.tfrecord"
    code, _, err = _extract([str(errors_csv), "-o", str(second), "--runner", "DirectRunner"], capsys,
                            after=("--", "--direct_num_workers=1"))  # Beam's own flags after --
    assert code == 0, err
    assert sorted(_records(tmp_path / "second-*-of-*.tfrecord")) == ["later"]
    assert _errors(tmp_path / "second-errors.csv") == [["path", "reason"]]


def test_every_file_failing_writes_no_shards(tmp_path, loader, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nothing")
    out = tmp_path / "out" / "feat.tfrecord"
    code, _, err = _extract([str(bad), "-o", str(out), "--runner", "DirectRunner"], capsys)
    assert code == 1 and "bad.mp4" in err
    assert not list(out.parent.glob("feat-*-of-*")), "an all-failed run left (empty) shards"
    assert [Path(row[0]).name for row in _errors(out.parent / "feat-errors.csv")[1:]] == ["bad.mp4"]


def test_remote_inputs_are_staged_and_removed(clips, tmp_path, loader, capsys, monkeypatch):
    """Inputs on another file system are copied to local temporary files, then removed."""
    monkeypatch.setattr(_FolderFileSystem, "root", clips.parent)
    staging = tmp_path / "tmp"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    local_out = tmp_path / "local.tfrecord"
    code, _, _ = _extract([str(clips / "birds"), "-o", str(local_out)], capsys)
    assert code == 0
    remote = f"{TEST_SCHEME}://{clips.name}/birds"
    out = tmp_path / "remote.tfrecord"
    code, _, err = _extract([remote, "-o", str(out), "--runner", "DirectRunner"], capsys)
    assert code == 0, err
    assert _records(tmp_path / "remote-*-of-*.tfrecord") == _records(local_out)
    assert not list(staging.glob("yt8m-beam-*")), "staged copies were left behind"


def test_inputs_errors_csv_and_remote_ids(tmp_path, monkeypatch):
    """Input expansion alone: an errors CSV lists files; remote ids follow --id-from like local ones."""
    folder = tmp_path / "store"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "b" / "x.mp4").write_bytes(b"")
    (folder / "a" / ".hidden").mkdir()
    (folder / "a" / ".hidden" / "y.mp4").write_bytes(b"")
    (folder / "a" / "notes.txt").write_text("")
    monkeypatch.setattr(_FolderFileSystem, "root", folder)
    found = yt8m_beam.find_videos([f"{TEST_SCHEME}://a"])
    assert [item.uri for item in found] == [f"{TEST_SCHEME}://a/b/x.mp4"]
    ids = {id_from: yt8m_beam.make_videos(found, ExtractOptions(id_from=id_from))[0][0].video_id
           for id_from in ("path", "stem")}
    assert ids == {"path": "b/x.mp4", "stem": "x"}
    listed = tmp_path / "old-errors.csv"
    listed.write_text(f'path,reason\n{TEST_SCHEME}://a/b/x.mp4,"bad, really"\n')
    assert [item.uri for item in yt8m_beam.find_videos([str(listed)])] == [f"{TEST_SCHEME}://a/b/x.mp4"]
    with pytest.raises(yt8m_beam.Yt8mError, match="no such file or folder"):
        yt8m_beam.find_videos([f"{TEST_SCHEME}://missing"])


def test_runner_without_beam_says_how_to_install(tmp_path, monkeypatch, capsys):
    """Without Apache Beam, --runner is one line naming the extra to install (no traceback)."""
    import sys

    import yt8m.extractor

    video = tmp_path / "v.mp4"
    write_test_video(video, 1.0, audio=None)
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # `import apache_beam` now fails
    monkeypatch.delitem(sys.modules, "yt8m.extractor.beam")
    monkeypatch.delattr(yt8m.extractor, "beam")
    code = main(["extract", str(video), "-o", str(tmp_path / "out.tfrecord"), "--runner", "DirectRunner"])
    err = capsys.readouterr().err
    assert code != 0 and 'pip install "yt8m[beam]"' in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_remote_model_files_are_copied_once(tmp_path, monkeypatch):
    """--models-dir / PCA paths on another file system become local copies for the loader."""
    store = tmp_path / "store"
    (store / "models" / "inception").mkdir(parents=True)
    (store / "models" / "inception" / "graph.pb").write_bytes(b"graph")
    (store / "models" / "pca.npz").write_bytes(b"pca")
    monkeypatch.setattr(_FolderFileSystem, "root", store)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    folder = Path(yt8m_beam._local_copy(f"{TEST_SCHEME}://models"))
    assert (folder / "inception" / "graph.pb").read_bytes() == b"graph" and (folder / "pca.npz").read_bytes() == b"pca"
    single = Path(yt8m_beam._local_copy(f"{TEST_SCHEME}://models/pca.npz"))
    assert single.name == "pca.npz" and single.read_bytes() == b"pca"
    assert yt8m_beam._local_copy(str(store)) == str(store)  # local paths are used where they are
    assert yt8m_beam.remote_path(Path(f"{TEST_SCHEME}://models")) == f"{TEST_SCHEME}://models"
