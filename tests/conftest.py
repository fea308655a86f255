"""Fixtures shared by several test files."""

from __future__ import annotations

import os
from pathlib import Path

import media_cases  # tests/media_cases.py: media files built and damaged with PyAV
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


@pytest.fixture(scope="session")
def bad_media(tmp_path_factory) -> dict[str, Path]:
    """Real files with the problems users meet (built by tests/media_media_cases.py), by name:
    `audio_only` (.ogg, Opus, no video), `unknown_codec` (.avi, FourCC no FFmpeg knows),
    `damaged_audio` (.avi, mpeg4 + AC-3 with one garbage audio packet), `no_audio_decodes`
    (.mkv, every AAC packet garbage), `truncated_mkv` (first 60 % of a 10 s .mkv), `gif`."""
    folder = tmp_path_factory.mktemp("bad_media")
    full_mkv = media_cases.write_indexed_video(folder / "full.mkv", [i / 10 for i in range(100)], rate=10)

    def garbage_all(packets):
        for index in range(len(packets)):
            media_cases.garbage_packet(packets, index, seed=index)

    return {
        "audio_only": media_cases.write_audio_only(folder / "audio_only.ogg"),
        "unknown_codec": media_cases.write_unknown_codec(folder / "unknown_codec.avi"),
        "damaged_audio": media_cases.write_av_file(
            folder / "damaged_audio.avi", damage_audio=lambda p: media_cases.garbage_packet(p, len(p) // 2)
        )[0],
        "no_audio_decodes": media_cases.write_av_file(
            folder / "no_audio_decodes.mkv", audio_codec="aac", damage_audio=garbage_all
        )[0],
        "truncated_mkv": media_cases.cut_file(full_mkv, folder / "truncated.mkv", 0.6),
        "gif": media_cases.write_indexed_video(folder / "clip.gif", [i / 10 for i in range(10)], codec="gif", rate=10),
    }


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty YT8M_HOME so nothing reads or writes the user's cache."""
    monkeypatch.setenv("YT8M_HOME", str(tmp_path_factory.mktemp("yt8m_home")))
