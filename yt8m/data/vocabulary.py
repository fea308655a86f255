"""Class names: the YT8M `vocabulary.csv`, MediaPipe's `label_map.txt` and custom label maps.

The official files are downloaded into the cache on demand (`yt8m models fetch --only
vocabulary`); a local copy can always be passed instead.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from yt8m.core import Yt8mError
from yt8m.data.files import write_text
from yt8m.data.records import list_record_files, validate_label_map_lines
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
LABEL_MAP_FILENAME = "label_map.txt"  # a model's own class names (train dir, export assets)
LABEL_MAP_SUFFIX = ".label_map.txt"  # beside records: OUT.tfrecord -> OUT.label_map.txt
_SHARD_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$")  # OUT-00000-of-00004 (data.shards.SHARD_PATTERN)


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


def read_label_map(path: str | os.PathLike) -> list[str]:
    """Class names in index order, one per line (trailing empty lines ignored, a leading BOM dropped).

    The one label-map reader of the project (extract, train, export, classify). A name other than
    the unnamed marker (`???`, used by MediaPipe's map) may appear only once: two classes with one
    name could not be told apart in a labels CSV or in the scores.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise Yt8mError(f"{path}: label map not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise Yt8mError(f"{path}: cannot read the label map ({error})") from None
    names = validate_label_map_lines(lines, str(path))  # BOM dropped, a blank line inside refused
    if not names:
        raise Yt8mError(f"{path}: label map is empty (expected one class name per line)")
    counts = Counter(name for name in names if name and name != UNNAMED)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise Yt8mError(f"{path}: label map names {duplicates[:5]} more than once")
    return names


def write_label_map(path: str | os.PathLike, names: Sequence[str]) -> Path:
    """Write class names one per line, in index order (atomically: temp name, fsync, rename)."""
    bad = [name for name in names if "\n" in name or "\r" in name]
    if bad:
        raise Yt8mError(f"{path}: class name {bad[0]!r} contains a line break")
    return write_text(path, "".join(f"{name}\n" for name in names))


def label_map_path_for(records: str | os.PathLike) -> Path:
    """Where the label map of a record file lives: OUT.tfrecord -> OUT.label_map.txt."""
    return Path(records).with_suffix(LABEL_MAP_SUFFIX)


def find_label_map(records: str | os.PathLike | Sequence[str | os.PathLike]) -> Path | None:
    """The label map saved beside the record files (`OUT.label_map.txt`, also for `OUT-00000-of-000NN`
    shards), when they share exactly one; None otherwise."""
    patterns = [records] if isinstance(records, (str, os.PathLike)) else list(records)
    found: set[Path] = set()
    for pattern in patterns:
        for name in list_record_files(str(pattern)):
            path = Path(name)
            stems = [path.with_suffix("")]
            if _SHARD_SUFFIX.search(stems[0].name):
                stems.append(stems[0].with_name(_SHARD_SUFFIX.sub("", stems[0].name)))
            for stem in stems:
                candidate = stem.with_name(stem.name + LABEL_MAP_SUFFIX)
                if candidate.is_file():
                    found.add(candidate)
    return found.pop() if len(found) == 1 else None


def load_label_map(path: str | os.PathLike) -> Vocabulary:
    """A label map as a `Vocabulary` (see `read_label_map`)."""
    return Vocabulary(names=read_label_map(path), source=str(path))


save_label_map = write_label_map  # the old name, kept until every caller uses write_label_map


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
