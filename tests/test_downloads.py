"""Downloads: cache location, checksummed fetch, safe archive extraction."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile
import zipfile

import pytest

from yt8m import downloads
from yt8m.core import Yt8mError


def official(tmp_path, payload: bytes, sha256: str | None, name: str = "thing") -> downloads.OfficialFile:
    source = tmp_path / "server" / f"{name}.bin"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(payload)
    return downloads.OfficialFile(name=name, url=source.as_uri(), filename=f"{name}.bin", sha256=sha256, option="--thing")


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("YT8M_HOME", str(tmp_path / "home"))
    assert downloads.cache_dir() == tmp_path / "home"
    monkeypatch.delenv("YT8M_HOME")
    assert str(downloads.cache_dir()).endswith(".cache/yt8m")


def test_fetch_verifies_checksum(tmp_path):
    payload = b"official bytes"
    file = official(tmp_path, payload, hashlib.sha256(payload).hexdigest())
    path = downloads.fetch(file)
    assert path.read_bytes() == payload and path == downloads.cached_path(file)
    assert downloads.resolve(file) == path
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_fetch_discards_a_mismatching_download(tmp_path):
    file = official(tmp_path, b"tampered", "0" * 64)
    with pytest.raises(Yt8mError, match="does not match the published"):
        downloads.fetch(file)
    assert not downloads.cached_path(file).exists()
    assert not list(downloads.cache_dir().glob(".*download"))


def test_unknown_checksum_is_pinned_at_first_download(tmp_path):
    file = official(tmp_path, b"v1", None)
    path = downloads.fetch(file)
    assert (path.parent / f"{path.name}.sha256").read_text().strip() == hashlib.sha256(b"v1").hexdigest()
    path.write_bytes(b"changed later")
    with pytest.raises(Yt8mError, match="does not match the expected"):
        downloads.resolve(file)


def test_offline_and_missing_errors_are_one_line(tmp_path):
    file = downloads.OfficialFile(name="thing", url="http://127.0.0.1:9/x", filename="x.bin", option="--thing")
    with pytest.raises(Yt8mError) as error:
        downloads.fetch(file)
    assert "cannot download thing" in str(error.value) and "--thing" in str(error.value)
    with pytest.raises(Yt8mError, match=r"not in the cache .*yt8m models fetch --only thing"):
        downloads.resolve(file)
    with pytest.raises(Yt8mError, match="no such file"):
        downloads.resolve(file, tmp_path / "nope")


def _tar(path, members):
    with tarfile.open(path, "w:gz") as bundle:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = data
                bundle.addfile(info)
            else:
                info.size = len(data)
                bundle.addfile(info, io.BytesIO(data))


def test_safe_extract_tar(tmp_path):
    archive = tmp_path / "ok.tgz"
    _tar(archive, [("pca/mean.npy", b"m", "file"), ("pca/eigenvals.npy", b"e", "file")])
    out = downloads.safe_extract(archive, tmp_path / "out")
    assert (out / "pca" / "mean.npy").read_bytes() == b"m"


@pytest.mark.parametrize(
    "members",
    [
        [("../evil.txt", b"x", "file")],
        [("/abs/evil.txt", b"x", "file")],
        [("good/../../evil.txt", b"x", "file")],
        [("link", "/etc/passwd", "symlink")],
    ],
)
def test_safe_extract_refuses_hostile_members(tmp_path, members):
    archive = tmp_path / "evil.tgz"
    _tar(archive, members)
    with pytest.raises(Yt8mError, match="evil.tgz: refusing"):
        downloads.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_safe_extract_zip(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as bundle:
        bundle.writestr("a/b.txt", "hi")
    assert (downloads.safe_extract(good, tmp_path / "g") / "a" / "b.txt").read_text() == "hi"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("../x.txt", "hi")
    with pytest.raises(Yt8mError, match="refusing"):
        downloads.safe_extract(evil, tmp_path / "e")
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(Yt8mError, match="junk.tgz: not a readable tar or zip archive"):
        downloads.safe_extract(junk, tmp_path / "j")


def test_a_full_disk_during_a_download_is_one_line(tmp_path, monkeypatch):
    file = official(tmp_path, b"x" * 3_000_000, None)
    real_write = os.fdopen

    class FullDisk:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data):
            if self.written + len(data) > 1_500_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += len(data)
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(downloads.os, "fdopen", lambda fd, mode: FullDisk(real_write(fd, mode)))
    with pytest.raises(Yt8mError) as error:
        downloads.fetch(file)
    message = str(error.value)
    assert "no space left on device while downloading thing" in message and "\n" not in message
    assert "cannot download" not in message  # not mistaken for a network problem
    assert list(downloads.cache_dir().iterdir()) == []  # the partial download is gone


def test_safe_extract_bounds_and_links(tmp_path):
    archive = tmp_path / "many.tgz"
    _tar(archive, [(f"f{i}", b"x", "file") for i in range(20)])
    with pytest.raises(Yt8mError, match="refusing to unpack 11 members"):
        downloads.safe_extract(archive, tmp_path / "out", max_members=10)
    with pytest.raises(Yt8mError, match="refusing to unpack 20 bytes"):
        downloads.safe_extract(archive, tmp_path / "out", max_bytes=19)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.tgz"]
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("zeros.bin", bytes(8 << 20))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(Yt8mError, match="refusing to unpack 8388608 bytes"):
        downloads.safe_extract(bomb, tmp_path / "z", max_bytes=1 << 20)
    assert not (tmp_path / "z").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    _tar(archive, [("a", b"x", "file")])
    with pytest.raises(Yt8mError, match="link: is a symbolic link"):
        downloads.safe_extract(archive, tmp_path / "link")
    assert downloads.safe_extract(archive, tmp_path / "target") == tmp_path / "target"  # a real folder is replaced
    assert (tmp_path / "target" / "a").read_bytes() == b"x"
