"""The cache of official files: where it lives, checksummed downloads, safe archive extraction.

Every official file yt8m uses (weights, PCA matrices, vocabulary) is described once as an
`OfficialFile` in the module that owns it; this module only knows how to get one into the cache
(`$YT8M_HOME`, default `~/.cache/yt8m`) and how to refuse a bad download or a hostile archive.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yt8m.core import Yt8mError

CACHE_ENV = "YT8M_HOME"
DEFAULT_CACHE = Path("~/.cache/yt8m")
DOWNLOAD_TIMEOUT_SECONDS = 60
CHUNK_BYTES = 1 << 20

ProgressCallback = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


@dataclass(frozen=True)
class OfficialFile:
    """One published file: where it comes from, what its bytes must hash to, where it is cached.

    `sha256=None` means no published checksum is known to yt8m: the download is then pinned on
    first use (its hash is stored next to it and checked on every later use).
    """

    name: str
    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    description: str = ""
    option: str = ""  # the CLI option that takes a local copy instead, for error messages

    @property
    def fetch_hint(self) -> str:
        local = f", or pass a local copy with {self.option}" if self.option else ""
        return f"run `yt8m models fetch --only {self.name}`{local}"


def cache_dir() -> Path:
    """The cache root: `$YT8M_HOME` or `~/.cache/yt8m` (created on demand)."""
    root = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()
    return root


def cached_path(file: OfficialFile) -> Path:
    """Where `file` lives in the cache (it may not exist yet)."""
    return cache_dir() / file.filename


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pin_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify(file: OfficialFile, path: Path) -> None:
    """Check `path` against the published checksum (or the hash pinned at first download)."""
    expected = file.sha256
    if expected is None and _pin_path(path).exists():
        expected = _pin_path(path).read_text().strip()
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise Yt8mError(
            f"{path}: SHA-256 {actual[:16]}... does not match the expected {expected[:16]}... for "
            f"{file.name}; delete it and {file.fetch_hint}"
        )


def fetch(file: OfficialFile, force: bool = False, progress: ProgressCallback | None = None) -> Path:
    """Download `file` into the cache unless a verified copy is there; returns its path.

    The download goes to a temporary name, is checksummed, and only then renamed into place.
    Offline or refused: a `Yt8mError` naming the URL and how to pass a local copy.
    """
    target = cached_path(file)
    if target.exists() and not force:
        verify(file, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".download", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(file.url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
                    total = getattr(response, "length", None)
                    done = 0
                    for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                        out.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
            except (urllib.error.URLError, OSError, ValueError) as error:
                reason = getattr(error, "reason", error)
                local = f" or pass a local copy with {file.option}" if file.option else ""
                raise Yt8mError(
                    f"cannot download {file.name} from {file.url} ({reason}); fetch it on a machine "
                    f"with internet into {target}{local}"
                ) from None
        actual = sha256_of(tmp)
        if file.sha256 is not None and actual != file.sha256:
            raise Yt8mError(
                f"{file.url}: downloaded SHA-256 {actual[:16]}... does not match the published "
                f"{file.sha256[:16]}...; the download was discarded"
            )
        if file.size is not None and tmp.stat().st_size != file.size:
            raise Yt8mError(f"{file.url}: downloaded {tmp.stat().st_size} bytes, expected {file.size}")
        os.replace(tmp, target)
        if file.sha256 is None:
            _pin_path(target).write_text(actual + "\n")
        return target
    finally:
        if tmp.exists():
            tmp.unlink()


def resolve(file: OfficialFile, local: str | os.PathLike | None = None) -> Path:
    """A usable path for `file`: the user's local copy if given, else the cached one.

    Never downloads: a missing file raises `Yt8mError` saying which command gets it.
    """
    if local is not None:
        path = Path(local).expanduser()
        if not path.exists():
            raise Yt8mError(f"{path}: no such file (given for {file.name})")
        return path
    target = cached_path(file)
    if not target.exists():
        raise Yt8mError(f"{file.name} is not in the cache ({target}); {file.fetch_hint}")
    verify(file, target)
    return target


def _check_member_path(name: str, archive: Path) -> None:
    normalized = os.path.normpath(name)
    if os.path.isabs(name) or normalized == ".." or normalized.startswith(".." + os.sep) or ":" in name.split("/")[0]:
        raise Yt8mError(f"{archive}: refusing archive member {name!r} outside the target folder")


def safe_extract(archive: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Extract a tar(.gz) or zip archive, refusing absolute paths, '..', links and devices.

    Extraction goes to a temporary folder beside `destination`, which is renamed into place when
    complete, so a failed extraction never leaves a half-filled folder.
    """
    archive = Path(archive)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                for info in bundle.infolist():
                    _check_member_path(info.filename, archive)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise Yt8mError(f"{archive}: refusing symbolic link {info.filename!r}")
                bundle.extractall(staging)
        else:
            try:
                bundle = tarfile.open(archive)
            except (tarfile.TarError, OSError) as error:
                raise Yt8mError(f"{archive}: not a readable tar or zip archive ({error})") from None
            with bundle:
                members = bundle.getmembers()
                for member in members:
                    _check_member_path(member.name, archive)
                    if not (member.isfile() or member.isdir()):
                        raise Yt8mError(f"{archive}: refusing {member.name!r} (links and devices are not extracted)")
                bundle.extractall(staging, members=members, filter="data")
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
        return destination
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
