"""Class names: the YT8M `vocabulary.csv`, MediaPipe's `label_map.txt` and custom label maps.

The official files are downloaded into the cache on demand (`yt8m models fetch --only
vocabulary`); a local copy can always be passed instead.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from yt8m.core import Yt8mError
from yt8m.downloads import OfficialFile, fetch, resolve

VOCABULARY_FILE = OfficialFile(
    name="vocabulary",
    url="https://research.google.com/youtube8m/csv/2/vocabulary.csv",
    filename="vocabulary.csv",
    sha256="ce52161bdb0de0058df6811ff3f024929112f5abbadf34e89d9ca09364e2dc84",
    description="YT8M 2018 vocabulary: 3862 classes with names and verticals",
    option="--vocabulary",
)
LABEL_MAP_FILE = OfficialFile(
    name="label-map",
    url="https://raw.githubusercontent.com/google/mediapipe/master/mediapipe/graphs/youtube8m/label_map.txt",
    filename="label_map.txt",
    sha256="d54232ac93bd928d3d08eda6d96122d12766adb6f6233ae34fdfc1f28d43cf17",
    description="MediaPipe's YT8M label map: 3862 class names in index order",
    option="--vocabulary",
)
SEGMENT_CLASSES_FILE = OfficialFile(
    name="segment-label-ids",
    url="https://raw.githubusercontent.com/google/youtube-8m/master/segment_label_ids.csv",
    filename="segment_label_ids.csv",
    sha256="630295ca904b31963a5e207de3efa697cedeb679feca22d3eba5aba449e28bc6",
    description="the 1000 class ids rated in the 2019 segment task",
    option="--segment-classes",
)
UNNAMED = "???"  # how the label map writes classes without a name


@dataclass
class Vocabulary:
    """Index -> class name (and, from vocabulary.csv, the vertical) for one label space."""

    names: list[str]
    verticals: list[str] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.names)

    def name(self, index: int) -> str:
        """The class name, or `class N` for an index the vocabulary does not cover or leaves unnamed."""
        if 0 <= index < len(self.names) and self.names[index] and self.names[index] != UNNAMED:
            return self.names[index]
        return f"class {index}"

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise Yt8mError(f"{self.source or 'vocabulary'}: no class named {name!r}") from None


def load_vocabulary_csv(path: str | os.PathLike) -> Vocabulary:
    """Read the official `vocabulary.csv` (columns Index, ..., Name, ..., Vertical1, ...)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise Yt8mError(f"{path}: cannot read vocabulary ({error})") from None
    if not rows or "Index" not in rows[0] or "Name" not in rows[0]:
        raise Yt8mError(f"{path}: not a YT8M vocabulary.csv (needs the columns Index and Name)")
    try:
        indexed = {int(row["Index"]): row for row in rows}
    except ValueError:
        raise Yt8mError(f"{path}: the Index column must hold integers") from None
    size = max(indexed) + 1
    names = [(indexed[i]["Name"] or "").strip() if i in indexed else "" for i in range(size)]
    verticals = [indexed[i].get("Vertical1", "") if i in indexed else "" for i in range(size)]
    return Vocabulary(names=names, verticals=verticals, source=str(path))


def load_label_map(path: str | os.PathLike) -> Vocabulary:
    """Read a label map: one class name per line, line number = class index."""
    path = Path(path)
    try:
        names = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise Yt8mError(f"{path}: cannot read label map ({error})") from None
    while names and not names[-1].strip():
        names.pop()
    if not names:
        raise Yt8mError(f"{path}: the label map is empty")
    return Vocabulary(names=[name.strip() for name in names], source=str(path))


def save_label_map(path: str | os.PathLike, names: list[str]) -> Path:
    """Write a label map (one name per line) via a temporary name."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_vocabulary(path: str | os.PathLike | None = None, download: bool = False) -> Vocabulary:
    """Load class names from `path` (vocabulary.csv or a label map), else from the cache.

    With no path, the cached official vocabulary.csv (or label_map.txt) is used; `download=True`
    fetches it when missing, and offline that raises a `Yt8mError` saying how to pass a local file.
    """
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise Yt8mError(f"{path}: no such vocabulary file")
        with open(path, encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
        return load_vocabulary_csv(path) if first.startswith("Index,") else load_label_map(path)
    for official, loader in ((VOCABULARY_FILE, load_vocabulary_csv), (LABEL_MAP_FILE, load_label_map)):
        try:
            return loader(resolve(official))
        except Yt8mError:
            continue
    if download:
        return load_vocabulary_csv(fetch(VOCABULARY_FILE))
    return load_vocabulary_csv(resolve(VOCABULARY_FILE))  # raises the "not cached" error


def try_load_vocabulary(path: str | os.PathLike | None = None) -> Vocabulary | None:
    """Like `load_vocabulary` without downloading; None when no vocabulary is available."""
    if path is not None:
        return load_vocabulary(path)
    try:
        return load_vocabulary(None)
    except Yt8mError:
        return None


def load_segment_classes(path: str | os.PathLike | None = None, download: bool = False) -> list[int]:
    """The class ids rated in the 2019 segment task (`segment_label_ids.csv`, header `Index`)."""
    if path is None:
        path = fetch(SEGMENT_CLASSES_FILE) if download else resolve(SEGMENT_CLASSES_FILE)
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise Yt8mError(f"{path}: cannot read segment class ids ({error})") from None
    if rows and rows[0] and not rows[0][0].strip().lstrip("-").isdigit():
        rows = rows[1:]
    try:
        return sorted(int(row[0]) for row in rows if row and row[0].strip())
    except ValueError:
        raise Yt8mError(f"{path}: segment class ids must be integers, one per line") from None
