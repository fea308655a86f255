"""What to extract: the input files found from paths / folders / patterns, their record ids and labels.

`scan_inputs` expands the command line (folders recursively, glob patterns) and counts what a
folder scan skipped by extension; `make_inputs` turns the found files into `VideoInput`s with
ids (`stem` or `path`) and labels from a labels CSV or the parent folders' names. Label maps are
read and written by the data layer's one reader / writer (yt8m.data.vocabulary).
"""

from __future__ import annotations

import csv
import glob as glob_lib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from yt8m.core import Yt8mError
from yt8m.data.vocabulary import label_map_path_for, read_label_map, write_label_map
from yt8m.extractor import video as video_lib

ID_FROM_STEM = "stem"
ID_FROM_PATH = "path"
ID_SOURCES = (ID_FROM_STEM, ID_FROM_PATH)
_GLOB_CHARS = "*?["
# Header names accepted in a labels CSV (case-insensitive).
KEY_COLUMNS = ("id", "video_id", "videoid", "path", "file", "filename", "video")
LABEL_COLUMNS = ("labels", "label", "classes", "class")
LABEL_SEPARATORS = (";", " ", "|")


@dataclass(frozen=True)
class VideoInput:
    """One file to extract, the record id it gets and its class indices.

    `has_audio`, when a probe already knows it, saves the extractor one more open of the file.
    """

    path: Path
    video_id: str
    labels: tuple[int, ...] = ()
    has_audio: bool | None = None


@dataclass(frozen=True)
class FoundVideo:
    """A video file found from the command line and the folder it was found under (if any)."""

    path: Path
    root: Path | None  # the folder argument it came from; None for a file named directly


@dataclass
class Scan:
    """The files found, and the files folder scans skipped, counted by extension ("" = none)."""

    found: list[FoundVideo] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class LabelledInputs:
    """`make_inputs`' result: the inputs, how many got no labels row, the label map built (if any)."""

    items: list[VideoInput]
    unlabelled: int = 0
    label_map: list[str] | None = None
    label_map_built: bool = False  # True when the names came from the folders (to be saved)


def scan_inputs(inputs: Iterable[str | Path]) -> Scan:
    """Expand files, folders (recursively, files with video extensions) and glob patterns.

    Files named directly or matched by a glob are taken whatever their extension (a non-video
    then fails with its own error line). A path that does not exist, a folder without videos or a
    pattern matching nothing is a Yt8mError. Duplicates (the same file twice) are dropped.
    """
    scan = Scan()
    seen: set[Path] = set()

    def add(path: Path, root: Path | None) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            scan.found.append(FoundVideo(path, root))

    def add_folder(folder: Path) -> int:
        files = sorted(
            p for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        videos, skipped = video_lib.split_by_extension(files)
        for suffix, count in skipped.items():
            scan.skipped[suffix] = scan.skipped.get(suffix, 0) + count
        for path in videos:
            add(path, folder)
        return len(videos)

    for raw in inputs:
        text = str(raw)
        path = Path(text)
        if path.is_dir():
            if not add_folder(path):
                known = ", ".join(sorted(video_lib.VIDEO_EXTENSIONS)[:6])
                raise Yt8mError(f"{path}: folder contains no video files ({known} ...)")
        elif path.is_file():
            add(path, None)
        elif any(ch in text for ch in _GLOB_CHARS):
            matches = sorted(glob_lib.glob(text, recursive=True))
            if not matches:
                raise Yt8mError(f"{text}: pattern matches no files")
            for match in matches:
                match_path = Path(match)
                if match_path.is_dir():
                    add_folder(match_path)
                elif match_path.is_file():
                    add(match_path, None)
        else:
            raise Yt8mError(f"{text}: no such file or folder")
    if not scan.found:
        raise Yt8mError("no video files found in the inputs")
    return scan


def collect_videos(inputs: Iterable[str | Path]) -> list[FoundVideo]:
    """The files `scan_inputs` finds (see there)."""
    return scan_inputs(inputs).found


def check_id_source(id_from: str) -> str:
    if id_from not in ID_SOURCES:
        raise Yt8mError(f"id_from must be {' or '.join(ID_SOURCES)}, got {id_from!r}")
    return id_from


def video_id_for(found: FoundVideo, id_from: str = ID_FROM_STEM) -> str:
    """The record id: the file stem, or (`path`) its path relative to the folder it was found in."""
    if check_id_source(id_from) == ID_FROM_STEM:
        return found.path.stem
    if found.root is not None:
        return found.path.relative_to(found.root).as_posix()
    return found.path.as_posix()


def check_unique_ids(items: Iterable[VideoInput]) -> None:
    """Two files with one id would collide in the records (and in resume): refuse early."""
    first: dict[str, Path] = {}
    for item in items:
        if item.video_id in first:
            raise Yt8mError(
                f"{item.path}: id {item.video_id!r} is also the id of {first[item.video_id]}; "
                "rename one or set id_from to path"
            )
        first[item.video_id] = item.path


def folder_label_map(videos: Iterable[Path], existing: Sequence[str] | None = None) -> list[str]:
    """Class names from the videos' parent folders: `existing` first (indices kept), new ones sorted after."""
    names = list(existing or [])
    known = set(names)
    for name in sorted({path.parent.name for path in videos}):
        if name not in known:
            names.append(name)
            known.add(name)
    return names


def _parse_labels(text: str, where: str, label_map: list[str] | None) -> tuple[int, ...]:
    tokens = [text]
    for separator in LABEL_SEPARATORS:
        tokens = [piece for token in tokens for piece in token.split(separator)]
    indices: list[int] = []
    for token in (t.strip() for t in tokens):
        if not token:
            continue
        try:
            index = int(token)
        except ValueError:
            if label_map is None:
                raise Yt8mError(
                    f"{where}: label {token!r} is not a class index; give label_map (class names) to use names"
                ) from None
            if token not in label_map:
                raise Yt8mError(f"{where}: class {token!r} is not in the label map")
            index = label_map.index(token)
        if index < 0 or (label_map is not None and index >= len(label_map)):
            bound = f" (the label map has {len(label_map)} classes)" if label_map is not None else ""
            raise Yt8mError(f"{where}: label {index} is out of range{bound}")
        indices.append(index)
    return tuple(sorted(set(indices)))


def read_labels_csv(path: str | Path, label_map: list[str] | None = None) -> dict[str, tuple[int, ...]]:
    """Labels per video from a CSV: rows `path_or_id,label;label;...` or a header'd CSV.

    With a header, the key column is one of `KEY_COLUMNS` (id, path, ...) and the labels column one
    of `LABEL_COLUMNS`; without one, the first two columns. Labels are class indices or, with a
    label map, class names; separated by `;`, spaces or `|`. Repeated keys merge their labels.
    """


    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise Yt8mError(f"{path}: labels file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise Yt8mError(f"{path}: cannot read the labels CSV ({error})") from None
    if not rows:
        raise Yt8mError(f"{path}: labels CSV is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    key_column, label_column, start = 0, 1, 0
    if any(name in KEY_COLUMNS for name in header) and any(name in LABEL_COLUMNS for name in header):
        key_column = next(i for i, name in enumerate(header) if name in KEY_COLUMNS)
        label_column = next(i for i, name in enumerate(header) if name in LABEL_COLUMNS)
        start = 1
    labels: dict[str, tuple[int, ...]] = {}
    for number, row in enumerate(rows[start:], start=start + 1):
        where = f"{path}: line {number}"
        if len(row) <= key_column or not row[key_column].strip():
            raise Yt8mError(f"{where}: missing the video id or path")
        key = row[key_column].strip()
        text = row[label_column] if len(row) > label_column else ""
        parsed = _parse_labels(text, where, label_map)
        labels[key] = tuple(sorted(set(labels.get(key, ())) | set(parsed)))
    return labels


def lookup_labels(labels: dict[str, tuple[int, ...]], item_id: str, found: FoundVideo) -> tuple[int, ...] | None:
    """The labels row for a video, matched by id, path as given, absolute path, file name or stem."""
    path = found.path
    candidates = [item_id, str(path), path.as_posix(), str(path.resolve()), path.name, path.stem]
    if found.root is not None:
        candidates.append(path.relative_to(found.root).as_posix())
    for key in candidates:
        if key in labels:
            return labels[key]
    return None


def make_inputs(
    found: Sequence[FoundVideo],
    id_from: str = ID_FROM_STEM,
    labels_csv: str | Path | None = None,
    labels_from_folders: bool = False,
    label_map: str | Path | None = None,
    existing_label_map: str | Path | None = None,
) -> LabelledInputs:
    """`VideoInput`s with ids and labels from a labels CSV or from the parent folders' names.

    `label_map` gives the class names (names in the CSV, or the folders' classes). With
    `labels_from_folders` and no `label_map`, the names are built from the folders, keeping the
    order of `existing_label_map` (a resumed run's) first; the caller saves them.
    """
    check_id_source(id_from)
    if labels_csv is not None and labels_from_folders:
        raise Yt8mError("give either labels (a CSV) or labels_from_folders, not both")
    if label_map is not None and labels_csv is None and not labels_from_folders:
        raise Yt8mError("label_map needs labels (a CSV) or labels_from_folders")
    names = read_label_map(label_map) if label_map is not None else None
    table = read_labels_csv(labels_csv, names) if labels_csv is not None else None
    built = False
    if labels_from_folders:
        if names is None:
            existing = read_label_map(existing_label_map) if existing_label_map is not None else None
            names = folder_label_map([video.path for video in found], existing)
            built = True
        else:
            unknown = sorted({video.path.parent.name for video in found} - set(names))
            if unknown:
                raise Yt8mError(f"{label_map}: has no class for folder(s) {', '.join(unknown[:5])}")
    items = []
    unlabelled = 0
    for video in found:
        video_id = video_id_for(video, id_from)
        item_labels: tuple[int, ...] = ()
        if labels_from_folders and names is not None:
            item_labels = (names.index(video.path.parent.name),)
        elif table is not None:
            match = lookup_labels(table, video_id, video)
            if match is None:
                unlabelled += 1
            else:
                item_labels = match
        items.append(VideoInput(video.path, video_id, item_labels))
    check_unique_ids(items)
    return LabelledInputs(items, unlabelled, names, built)


__all__ = [
    "FoundVideo", "ID_FROM_PATH", "ID_FROM_STEM", "ID_SOURCES", "LabelledInputs", "Scan", "VideoInput",
    "check_id_source", "check_unique_ids", "collect_videos", "folder_label_map", "label_map_path_for",
    "lookup_labels", "make_inputs", "read_label_map", "read_labels_csv", "scan_inputs", "video_id_for",
    "write_label_map",
]
