"""The catalogue of official files, `yt8m models fetch/list`, and finding files for the extractor."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile

import numpy as np
import pytest

from yt8m import downloads, trust
from yt8m.app.cli import main
from yt8m.core import Yt8mError
from yt8m.extractor import weights

UNREACHABLE_URL = "http://127.0.0.1:9/nothing-listens-here.tgz"  # port 9 (discard): refused at once


def serve(monkeypatch, tmp_path, name: str, payload: bytes, sha256: str | None = "auto") -> downloads.OfficialFile:
    """Replace catalogue entry `name` by one served from a local file:// URL."""
    source = tmp_path / "server" / weights.get(name).filename
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest() if sha256 == "auto" else sha256
    entry = dataclasses.replace(weights.get(name), url=source.as_uri(), sha256=digest, size=None)
    monkeypatch.setitem(weights.CATALOGUE, name, entry)
    return entry


def tar_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------ catalogue


def test_catalogue_entries_are_complete_and_distinct():
    files = list(weights.CATALOGUE.values())
    assert len({f.filename for f in files}) == len(files)
    assert all(f.url.startswith("https://") and f.description for f in files)  # no plain http anywhere
    for name in ("inception", "yt8m-pca", "vggish", "vggish-pca", "vocabulary", "label-map",
                 "segment-label-ids", "baseline-model"):
        assert weights.get(name).name == name
    published = {
        "vocabulary": "ce52161bdb0de0058df6811ff3f024929112f5abbadf34e89d9ca09364e2dc84",
        "label-map": "d54232ac93bd928d3d08eda6d96122d12766adb6f6233ae34fdfc1f28d43cf17",
        "segment-label-ids": "630295ca904b31963a5e207de3efa697cedeb679feca22d3eba5aba449e28bc6",
    }
    for name, digest in published.items():
        assert weights.get(name).sha256 == digest
    pca_urls = {weights.get(n).url for n in weights.GROUPS["mediapipe-pca"]}
    assert pca_urls == {
        f"https://storage.googleapis.com/data.yt8m.org/pca_matrix_data/{m}_{k}_matrix_data.pb"
        for m in ("inception3", "vggish") for k in ("mean", "projection")
    }
    assert set(weights.ARCHIVES) <= set(weights.CATALOGUE)


def test_published_checksums_match_the_shared_copies(shared_data):
    for name in ("vocabulary", "label-map", "segment-label-ids"):
        entry = weights.get(name)
        assert downloads.sha256_of(shared_data / entry.filename) == entry.sha256


def test_unknown_names_and_groups():
    with pytest.raises(Yt8mError, match="unknown model file 'inceptoin'.*inception"):
        weights.get("inceptoin")
    assert weights.expand(["mediapipe-pca", "mediapipe-vggish-mean", "vggish"]) == [
        *weights.GROUPS["mediapipe-pca"], "vggish"]
    default = weights.expand(None)
    assert "baseline-model" not in default and "inception" in default and "vocabulary" in default
    assert weights.expand(None, everything=True) == list(weights.CATALOGUE)


# ------------------------------------------------------------------------------------ fetching


def test_fetch_checks_the_published_checksum(monkeypatch, tmp_path):
    payload = b"Index,TrainVideoCount,KnowledgeGraphId,Name\n0,1,/m/x,Game\n"
    serve(monkeypatch, tmp_path, "vocabulary", payload)
    seen = []
    (path,) = weights.fetch_all(["vocabulary"], progress=lambda name, done, total: seen.append((name, done)))
    assert path == downloads.cache_dir() / "vocabulary.csv" and path.read_bytes() == payload
    assert seen and seen[-1] == ("vocabulary", len(payload))
    row = {r.name: r for r in weights.status()}["vocabulary"]
    assert row.present and row.size == len(payload) and row.path == path
    assert weights.locate("vocabulary") == path


def test_fetch_discards_a_download_with_the_wrong_checksum(monkeypatch, tmp_path):
    serve(monkeypatch, tmp_path, "label-map", b"not the label map\n", sha256="1" * 64)
    with pytest.raises(Yt8mError) as error:
        weights.fetch_all(["label-map"])
    message = str(error.value)
    assert "does not match" in message and "discarded" in message and "\n" not in message
    assert not (downloads.cache_dir() / "label_map.txt").exists()
    assert not [p for p in downloads.cache_dir().rglob("*") if p.is_file()]


def test_offline_fetch_is_one_line_naming_the_file(monkeypatch):
    entry = dataclasses.replace(weights.get("vggish"), url=UNREACHABLE_URL)
    monkeypatch.setitem(weights.CATALOGUE, "vggish", entry)
    with pytest.raises(Yt8mError) as error:
        weights.fetch("vggish")
    message = str(error.value)
    assert "vggish" in message and UNREACHABLE_URL in message and "\n" not in message
    assert not (downloads.cache_dir() / "vggish_model.ckpt").exists()


def test_archive_is_fetched_into_a_folder_and_unpacked(monkeypatch, tmp_path):
    mean, vals, vecs = np.arange(4.0).reshape(4, 1), np.ones((4, 1)), np.eye(4)
    payload = tar_bytes({"mean.npy": npy_bytes(mean), "eigenvals.npy": npy_bytes(vals), "eigenvecs.npy": npy_bytes(vecs)})
    serve(monkeypatch, tmp_path, "yt8m-pca", payload, sha256=None)  # no published hash: pinned
    models = tmp_path / "models"
    folder = weights.fetch("yt8m-pca", directory=models)
    assert folder == models / "yt8m_pca"
    np.testing.assert_array_equal(np.load(folder / "mean.npy"), mean)
    assert (models / "yt8m_pca.tgz").read_bytes() == payload
    assert (models / "yt8m_pca.tgz.sha256").read_text().strip() == hashlib.sha256(payload).hexdigest()
    assert weights.locate("yt8m-pca", models) == folder
    assert weights.find_member("yt8m-pca", "eigenvecs.npy", models) == folder / "eigenvecs.npy"
    assert not (downloads.cache_dir() / "yt8m_pca.tgz").exists()  # --models-dir: nothing in the cache


@pytest.mark.parametrize(
    "members, links",
    [
        ({"../escape.pb": b"x", "classify_image_graph_def.pb": b"g"}, None),
        ({"/tmp/absolute.pb": b"x", "classify_image_graph_def.pb": b"g"}, None),
        ({"classify_image_graph_def.pb": b"g"}, {"link.pb": "/etc/passwd"}),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_hostile_archives_are_refused(monkeypatch, tmp_path, members, links):
    serve(monkeypatch, tmp_path, "inception", tar_bytes(members, links))
    with pytest.raises(Yt8mError, match="refusing"):
        weights.fetch("inception")
    cache = downloads.cache_dir()
    assert not (cache / "inception-2015-12-05").exists()
    assert not (cache.parent / "escape.pb").exists()
    assert not (tmp_path / "escape.pb").exists()


def test_archive_without_the_needed_member_is_an_error(monkeypatch, tmp_path):
    serve(monkeypatch, tmp_path, "inception", tar_bytes({"LICENSE": b"text"}))
    with pytest.raises(Yt8mError, match="does not contain classify_image_graph_def.pb"):
        weights.fetch("inception")


def test_unpacked_members_are_hashed_and_checked_on_use(monkeypatch, tmp_path):
    payload = tar_bytes({"mean.npy": npy_bytes(np.zeros((4, 1))), "eigenvals.npy": npy_bytes(np.ones((4, 1))),
                         "eigenvecs.npy": npy_bytes(np.eye(4))})
    serve(monkeypatch, tmp_path, "yt8m-pca", payload)
    models = tmp_path / "models"
    folder = weights.fetch("yt8m-pca", directory=models)
    manifest = weights.manifest_path("yt8m-pca", models)
    assert manifest.is_file() and "eigenvecs.npy" in manifest.read_text()
    assert weights.locate("yt8m-pca", models) == folder
    (folder / "eigenvecs.npy").write_bytes(npy_bytes(np.eye(4) * 2))  # changed after the fetch
    with pytest.raises(Yt8mError, match=r"eigenvecs.npy: changed since it was fetched .*--force"):
        weights.locate("yt8m-pca", models)
    weights.fetch("yt8m-pca", directory=models, force=True)
    assert weights.locate("yt8m-pca", models) == folder


def test_archive_bomb_is_refused_early_and_cleaned_up(monkeypatch, tmp_path):
    """A small archive that would unpack far beyond what the catalogue expects of it."""
    monkeypatch.setitem(weights.ARCHIVE_MAX_BYTES, "inception", 1 << 20)
    zeros = bytes(32 << 20)
    payload = tar_bytes({"classify_image_graph_def.pb": b"g", "bomb.bin": zeros})
    assert len(payload) < 100_000  # ~32 KB that would become 32 MB
    serve(monkeypatch, tmp_path, "inception", payload)
    models = tmp_path / "models"
    with pytest.raises(Yt8mError, match=r"refusing to unpack \d+ bytes \(at most 1048576 expected"):
        weights.fetch("inception", directory=models)
    leftovers = [p for p in models.iterdir() if p.name != "inception-2015-12-05.tgz" and not p.name.endswith(".sha256")]
    assert leftovers == []  # no folder, no staging


def test_a_symlinked_destination_is_one_line(monkeypatch, tmp_path):
    payload = tar_bytes({"classify_image_graph_def.pb": b"graph"})
    serve(monkeypatch, tmp_path, "inception", payload)
    models = tmp_path / "models"
    models.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (models / "inception-2015-12-05").symlink_to(elsewhere)
    with pytest.raises(Yt8mError, match="inception-2015-12-05: is a symbolic link"):
        weights.fetch("inception", directory=models, force=True)
    assert elsewhere.is_dir() and (models / "inception-2015-12-05").is_symlink()
    (models / "vggish_model.ckpt").symlink_to(tmp_path / "nowhere.ckpt")
    serve(monkeypatch, tmp_path, "vggish", b"ckpt")
    with pytest.raises(Yt8mError, match="vggish_model.ckpt: is a symbolic link to nothing"):
        weights.fetch("vggish", directory=models)


def test_baseline_model_from_the_catalogue_is_trusted(monkeypatch, tmp_path):
    pb = b"\x08\x01"  # a SavedModel proto with only its schema version
    serve(monkeypatch, tmp_path, "baseline-model", tar_bytes({"export/saved_model.pb": pb}))
    folder = weights.fetch("baseline-model", directory=tmp_path / "models")
    assert trust.is_trusted(folder)
    (folder / "saved_model.pb").write_bytes(pb + b"\x08\x01")
    assert not trust.is_trusted(folder)


# ------------------------------------------------------------------------------------ locating


def test_missing_files_name_the_fetch_command(tmp_path):
    with pytest.raises(Yt8mError) as error:
        weights.find_member("inception", weights.INCEPTION_GRAPH_FILE)
    assert "`yt8m models fetch --only inception`" in str(error.value)
    assert "classify_image_graph_def.pb" in str(error.value)
    with pytest.raises(Yt8mError) as error:
        weights.locate("vggish", tmp_path / "mine")
    message = str(error.value)
    assert "vggish_model.ckpt" in message and f"`yt8m models fetch --only vggish --models-dir {tmp_path / 'mine'}`" in message


def test_starter_code_layout_and_archive_only_folders_are_found(tmp_path):
    starter = tmp_path / "yt8m"  # the official extractor's ~/yt8m: everything side by side
    starter.mkdir()
    (starter / "classify_image_graph_def.pb").write_bytes(b"graph")
    assert weights.find_member("inception", "classify_image_graph_def.pb", starter) == starter / "classify_image_graph_def.pb"

    copied = tmp_path / "copied"  # only the archive, as downloaded by hand: unpacked on first use
    copied.mkdir()
    (copied / "inception-2015-12-05.tgz").write_bytes(tar_bytes({"classify_image_graph_def.pb": b"graph", "LICENSE": b"l"}))
    assert weights.is_present("inception", copied)
    found = weights.find_member("inception", "classify_image_graph_def.pb", copied)
    assert found == copied / "inception-2015-12-05" / "classify_image_graph_def.pb" and found.read_bytes() == b"graph"


def test_locate_refuses_a_file_that_does_not_match_its_checksum(tmp_path):
    (tmp_path / "segment_label_ids.csv").write_text("Index\n1\n")
    with pytest.raises(Yt8mError, match="does not match"):
        weights.locate("segment-label-ids", tmp_path)


# ------------------------------------------------------------------------------------ CLI


def test_cli_models_fetch_and_list(monkeypatch, tmp_path, capsys):
    payload = b"Index\n3\n5\n"
    serve(monkeypatch, tmp_path, "segment-label-ids", payload)
    models = tmp_path / "models"
    assert main(["models", "fetch", "--only", "segment-label-ids", "--models-dir", str(models)]) == 0
    out = capsys.readouterr().out
    assert "segment-label-ids" in out and (models / "segment_label_ids.csv").read_bytes() == payload

    assert main(["models", "list", "--models-dir", str(models)]) == 0
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    assert "present" in lines["segment-label-ids"] and f"{len(payload)} B" in lines["segment-label-ids"]
    assert "missing" in lines["vocabulary"]
    assert "missing (optional)" in lines["baseline-model"]


def test_cli_models_fetch_errors_are_one_line(monkeypatch, tmp_path, capsys):
    entry = dataclasses.replace(weights.get("vocabulary"), url=UNREACHABLE_URL)
    monkeypatch.setitem(weights.CATALOGUE, "vocabulary", entry)
    assert main(["models", "fetch", "--only", "vocabulary"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("yt8m: error: cannot download vocabulary") and len(err.splitlines()) == 1
    assert main(["models", "fetch", "--only", "nonsense"]) == 1
    assert "unknown model file 'nonsense'" in capsys.readouterr().err
