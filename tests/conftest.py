"""Fixtures shared by several test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _shared_data_dir() -> Path | None:
    """The YT8M vocabulary/label-map files beside the project (never copied into it)."""
    candidates = [os.environ.get("YT8M_SHARED_DATA", "")]
    here = Path(__file__).resolve().parent.parent
    candidates += [str(here.parent / "shared" / "data"), "/work/shared/data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "vocabulary.csv").exists():
            return Path(candidate)
    return None


@pytest.fixture
def shared_data() -> Path:
    """Directory holding vocabulary.csv, label_map.txt and segment_label_ids.csv; skips if absent."""
    directory = _shared_data_dir()
    if directory is None:
        pytest.skip("the shared YT8M data files (vocabulary.csv, ...) are not available")
    return directory


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty YT8M_HOME so nothing reads or writes the user's cache."""
    monkeypatch.setenv("YT8M_HOME", str(tmp_path_factory.mktemp("yt8m_home")))
