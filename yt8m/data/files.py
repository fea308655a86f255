"""Writing files so that a reader never sees half of one: temp name, fsync, rename.

Every output yt8m writes (records, label maps, CSVs, configs, reports, exports) goes through
`atomic_path`: the work happens under a hidden `.NAME.inprogress` name next to the target, the
data is flushed to disk, and only a complete file is renamed over the target. A failed or killed
run leaves the previous target untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

IN_PROGRESS_SUFFIX = ".inprogress"


def temporary_name(target: str | os.PathLike) -> Path:
    """The hidden in-progress name used for `target` while it is written."""
    target = Path(target)
    return target.with_name(f".{target.name}{IN_PROGRESS_SUFFIX}")


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or every file under a folder's) data to disk, then the folder entry itself."""
    path = Path(path)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    for file in files:
        with contextlib.suppress(OSError):
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(path.parent)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames inside `folder` durable (a no-op where the platform cannot open folders)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_path(path: str | os.PathLike) -> None:
    """Remove a file, link or folder if it exists (a link is removed, never followed)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def replace_path(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move a complete file or folder over `target` after flushing it to disk."""
    source, target = Path(source), Path(target)
    fsync_path(source)
    if source.is_dir() and (target.is_dir() and not target.is_symlink()):
        old = target.with_name(f".{target.name}.old")
        remove_path(old)
        os.replace(target, old)
        os.replace(source, target)
        remove_path(old)
    else:
        if target.is_symlink():
            target.unlink()
        os.replace(source, target)
    fsync_dir(target.parent)
    return target


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write `target`'s content to (file or folder); rename it on success.

    On an exception the temporary is removed and the target keeps its previous content.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(target)
    remove_path(temporary)
    try:
        yield temporary
    except BaseException:
        remove_path(temporary)
        raise
    replace_path(temporary, target)


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Write a text file (UTF-8) atomically."""
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write a binary file atomically."""
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)
    return Path(target)
