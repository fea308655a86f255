"""The cache of official files: where it lives, checksummed downloads, safe archive extraction.

Every official file yt8m uses (weights, PCA matrices, vocabulary) is described once as an
`OfficialFile` in the module that owns it; this module only knows how to get one into the cache
(`$YT8M_HOME`, default `~/.cache/yt8m`) and how to refuse a bad download or a hostile archive.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yt8m.core import Yt8mError
from yt8m.data.files import remove_path, replace_path

CACHE_ENV = "YT8M_HOME"
DEFAULT_CACHE = Path("~/.cache/yt8m")
DOWNLOAD_TIMEOUT_SECONDS = 60
CHUNK_BYTES = 1 << 20
# Bounds for an archive's unpacked content when the catalogue gives none (see `safe_extract`).
DEFAULT_MAX_EXPANDED_BYTES = 2 << 30
DEFAULT_MAX_MEMBERS = 10_000

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
    if target.is_symlink():
        raise Yt8mError(
            f"{target}: is a symbolic link{'' if target.exists() else ' to nothing'}; yt8m does not replace "
            f"links: remove it, or download into the folder it points to"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Yt8mError(f"{target.parent}: cannot create the folder for {file.name} ({error.strerror})") from None
    try:
        handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".download", dir=target.parent)
    except OSError as error:
        raise Yt8mError(f"{target.parent}: cannot write {file.name} there ({error.strerror})") from None
    tmp = Path(tmp_name)
    done = 0
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(file.url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
                    total = getattr(response, "length", None)
                    for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                        _write_chunk(out, chunk, file, target, done)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
                    out.flush()
                    os.fsync(out.fileno())
            except Yt8mError:
                raise
            except (urllib.error.URLError, OSError, ValueError) as error:
                if isinstance(error, OSError) and error.errno in _DISK_ERRORS:
                    raise _disk_error(error, file, target, done) from None
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


_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _disk_error(error: OSError, file: OfficialFile, target: Path, done: int) -> Yt8mError:
    reason = "no space left on device" if error.errno in (errno.ENOSPC, errno.EDQUOT) else error.strerror
    return Yt8mError(
        f"{target.parent}: {reason} while downloading {file.name} ({done} bytes written, the partial "
        "download was removed); free space or choose another folder, then fetch again"
    )


def _write_chunk(out, chunk: bytes, file: OfficialFile, target: Path, done: int) -> None:
    """Write one downloaded chunk; a full or read-only disk is a one-line error, not a network one."""
    try:
        out.write(chunk)
    except OSError as error:
        raise _disk_error(error, file, target, done) from None


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


def _expanded_size(archive: Path, sizes: list[int], max_bytes: int, max_members: int) -> None:
    """Refuse an archive whose members would unpack to more than the bounds (before writing anything)."""
    if len(sizes) > max_members:
        raise Yt8mError(f"{archive}: refusing to unpack {len(sizes)} members (at most {max_members} expected)")
    total = sum(sizes)
    if total > max_bytes:
        raise Yt8mError(
            f"{archive}: refusing to unpack {total} bytes (at most {max_bytes} expected for this archive); "
            "it is not the expected file"
        )


def safe_extract(
    archive: str | os.PathLike,
    destination: str | os.PathLike,
    max_bytes: int = DEFAULT_MAX_EXPANDED_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Path:
    """Extract a tar(.gz) or zip archive, refusing absolute paths, '..', links, devices and bombs.

    The members' declared sizes (which bound what tarfile / zipfile write) must add up to at most
    `max_bytes`, and there may be at most `max_members`: checked before anything is written.
    Extraction goes to a temporary folder beside `destination`, which is renamed into place when
    complete, so a failed or refused extraction never leaves a half-filled folder. A destination
    that is a symbolic link is refused (it is never followed or replaced).
    """
    archive = Path(archive)
    destination = Path(destination)
    if destination.is_symlink():
        raise Yt8mError(
            f"{destination}: is a symbolic link; yt8m does not unpack through links: remove it, "
            "or give the folder it points to"
        )
    if destination.exists() and not destination.is_dir():
        raise Yt8mError(f"{destination}: exists and is not a folder; remove it to unpack {archive.name} there")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    except OSError as error:
        raise Yt8mError(f"{destination.parent}: cannot unpack {archive.name} there ({error.strerror})") from None
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                infos = bundle.infolist()
                for info in infos:
                    _check_member_path(info.filename, archive)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise Yt8mError(f"{archive}: refusing symbolic link {info.filename!r}")
                _expanded_size(archive, [info.file_size for info in infos], max_bytes, max_members)
                bundle.extractall(staging)
        else:
            try:
                bundle = tarfile.open(archive)
            except (tarfile.TarError, OSError) as error:
                raise Yt8mError(f"{archive}: not a readable tar or zip archive ({error})") from None
            with bundle:
                members = []
                for member in bundle:  # stops early: a bomb of many members is refused while listing
                    _check_member_path(member.name, archive)
                    if not (member.isfile() or member.isdir()):
                        raise Yt8mError(f"{archive}: refusing {member.name!r} (links and devices are not extracted)")
                    members.append(member)
                    _expanded_size(archive, [m.size for m in members], max_bytes, max_members)
                bundle.extractall(staging, members=members, filter="data")
        replace_path(staging, destination)
        return destination
    except OSError as error:
        if error.errno in _DISK_ERRORS:
            reason = "no space left on device" if error.errno in (errno.ENOSPC, errno.EDQUOT) else error.strerror
            raise Yt8mError(f"{destination.parent}: {reason} while unpacking {archive.name}; nothing was kept") from None
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as error:
        raise Yt8mError(f"{archive}: damaged archive ({error}); delete it and fetch it again") from None
    finally:
        remove_path(staging)
