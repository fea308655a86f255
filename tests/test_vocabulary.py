"""Vocabulary: the official csv, label maps, the cache and the offline error."""

from __future__ import annotations

import pytest

from yt8m.classifier import vocabulary
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
