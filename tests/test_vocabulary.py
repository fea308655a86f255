"""Vocabulary: the official csv, label maps, the cache and the offline error."""

from __future__ import annotations

import pytest

from yt8m.data import vocabulary
from yt8m.core import Yt8mError
from yt8m.downloads import cached_path


def test_official_vocabulary_csv(shared_data):
    vocab = vocabulary.load_vocabulary(shared_data / "vocabulary.csv")
    assert len(vocab) == 3862
    assert vocab.name(0) == "Game" and vocab.name(1) == "Video game"
    assert vocab.verticals[0] == "Games"
    assert vocab.index("Vehicle") == 2
    assert vocab.name(99999) == "class 99999"


def test_label_map_agrees_with_vocabulary(shared_data):
    label_map = vocabulary.load_vocabulary(shared_data / "label_map.txt")
    vocab = vocabulary.load_vocabulary(shared_data / "vocabulary.csv")
    assert len(label_map) == len(vocab) == 3862
    named = [i for i in range(3862) if label_map.names[i] != vocabulary.UNNAMED]
    assert all(label_map.name(i) == vocab.name(i) for i in named)
    unnamed = [i for i in range(3862) if label_map.names[i] == vocabulary.UNNAMED]
    assert len(unnamed) == 56 and label_map.name(unnamed[0]) == f"class {unnamed[0]}"


def test_segment_class_ids(shared_data):
    ids = vocabulary.load_segment_classes(shared_data / "segment_label_ids.csv")
    assert len(ids) == 1000 and ids == sorted(set(ids)) and ids[0] == 3


def test_custom_label_map_round_trip(tmp_path):
    path = vocabulary.save_label_map(tmp_path / "labels.txt", ["cats", "dogs", "red balls"])
    vocab = vocabulary.load_vocabulary(path)
    assert vocab.names == ["cats", "dogs", "red balls"] and vocab.name(2) == "red balls"


def test_cached_official_file_is_used_and_checked(shared_data, tmp_path):
    target = cached_path(vocabulary.VOCABULARY_FILE)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((shared_data / "vocabulary.csv").read_bytes())
    assert vocabulary.load_vocabulary().name(0) == "Game"
    target.write_text("Index,Name\n0,Tampered\n")
    with pytest.raises(Yt8mError, match="does not match the expected"):
        vocabulary.load_vocabulary()


def test_offline_download_gives_one_clear_error(monkeypatch):
    offline = vocabulary.VOCABULARY_FILE.__class__(
        **{**vocabulary.VOCABULARY_FILE.__dict__, "url": "http://127.0.0.1:9/vocabulary.csv"}
    )
    monkeypatch.setattr(vocabulary, "VOCABULARY_FILE", offline)
    with pytest.raises(Yt8mError) as error:
        vocabulary.load_vocabulary(download=True)
    message = str(error.value)
    assert "cannot download vocabulary" in message and "--vocabulary" in message
    assert "\n" not in message
    assert vocabulary.try_load_vocabulary() is None


def test_bad_vocabulary_files(tmp_path):
    with pytest.raises(Yt8mError, match="no such vocabulary file"):
        vocabulary.load_vocabulary(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("Index,Foo\n0,1\n")
    with pytest.raises(Yt8mError, match="bad.csv: not a YT8M vocabulary.csv"):
        vocabulary.load_vocabulary(bad)


def test_one_label_map_reader_and_writer(tmp_path, shared_data):
    """read_label_map / write_label_map serve extract, train, export and classify alike."""
    path = vocabulary.write_label_map(tmp_path / "out" / "labels.txt", ["cats", "dogs", "red balls"])
    assert path.read_text(encoding="utf-8") == "cats\ndogs\nred balls\n"
    assert not list(path.parent.glob(".*"))  # written under a temporary name, nothing left behind
    assert vocabulary.read_label_map(path) == ["cats", "dogs", "red balls"]
    assert vocabulary.load_label_map(path).names == ["cats", "dogs", "red balls"]
    assert vocabulary.save_label_map is vocabulary.write_label_map  # the old name, until callers switch
    official = vocabulary.read_label_map(shared_data / "label_map.txt")  # MediaPipe's: '???' many times
    assert len(official) == 3862 and official.count(vocabulary.UNNAMED) == 56
    (tmp_path / "dup.txt").write_text("cats\ndogs\ncats\n\n", encoding="utf-8")
    with pytest.raises(Yt8mError, match=r"dup\.txt: label map names \['cats'\] more than once"):
        vocabulary.read_label_map(tmp_path / "dup.txt")
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(Yt8mError, match="empty.txt: label map is empty"):
        vocabulary.read_label_map(tmp_path / "empty.txt")
    with pytest.raises(Yt8mError, match="missing.txt: label map not found"):
        vocabulary.read_label_map(tmp_path / "missing.txt")
    with pytest.raises(Yt8mError, match="line break"):
        vocabulary.write_label_map(tmp_path / "bad.txt", ["a\nb"])
    (tmp_path / "bom.txt").write_text("\ufeffcats\ndogs\n", encoding="utf-8")  # as Windows editors save it
    assert vocabulary.read_label_map(tmp_path / "bom.txt") == ["cats", "dogs"]
    (tmp_path / "gap.txt").write_text("cats\n\ndogs\n", encoding="utf-8")  # would shift dogs to class 2
    with pytest.raises(Yt8mError, match=r"gap\.txt: line 2 is blank"):
        vocabulary.read_label_map(tmp_path / "gap.txt")


def test_label_map_beside_records_and_shards(tmp_path):
    assert vocabulary.label_map_path_for(tmp_path / "out.tfrecord") == tmp_path / "out.label_map.txt"
    for name in ("out-00000-of-00002.tfrecord", "out-00001-of-00002.tfrecord", "single.tfrecord"):
        (tmp_path / name).write_bytes(b"")
    assert vocabulary.find_label_map(str(tmp_path / "out-*")) is None
    vocabulary.write_label_map(vocabulary.label_map_path_for(tmp_path / "out.tfrecord"), ["a", "b"])
    assert vocabulary.find_label_map(str(tmp_path / "out-*")) == tmp_path / "out.label_map.txt"
    vocabulary.write_label_map(tmp_path / "single.label_map.txt", ["c"])
    assert vocabulary.find_label_map([str(tmp_path / "out-*"), str(tmp_path / "single.tfrecord")]) is None  # two maps
