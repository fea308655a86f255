"""The official files behind YT8M features: where they come from, how they are checked, where they are.

Every file is one `OfficialFile` in `CATALOGUE` (URL, SHA-256 when one is published, size when
known). `fetch_all` downloads into the yt8m cache (or a `--models-dir` folder) through
`yt8m.downloads` (temporary name, checksum, rename; files without a published checksum are
pinned at first download) and unpacks the archives with `safe_extract`. `locate` / `find_member`
find a file for the extractor without ever downloading; a missing one is a `Yt8mError` naming the
file and the `yt8m models fetch` command that gets it.

A folder given as `models_dir` may hold the files as `yt8m models fetch --models-dir` lays them
out (archives next to their unpacked folders) or as the official starter code does
(`classify_image_graph_def.pb` and `mean.npy` ... side by side, e.g. `~/yt8m`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from yt8m import downloads, trust
from yt8m.data.vocabulary import LABEL_MAP_FILE, SEGMENT_CLASSES_FILE, VOCABULARY_FILE
from yt8m.core import Yt8mError
from yt8m.data.files import remove_path, write_text
from yt8m.downloads import OfficialFile

MODELS_DIR_OPTION = "--models-dir"

# Members of the archives the extractor needs (the rest of an archive is unpacked but unused).
INCEPTION_GRAPH_FILE = "classify_image_graph_def.pb"
YT8M_PCA_FILES = ("mean.npy", "eigenvals.npy", "eigenvecs.npy")
SAVED_MODEL_FILE = trust.SAVED_MODEL_FILE
KERAS_INCEPTION_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"

INCEPTION = "inception"
YT8M_PCA = "yt8m-pca"
VGGISH = "vggish"
VGGISH_PCA = "vggish-pca"
MEDIAPIPE_INCEPTION_MEAN = "mediapipe-inception3-mean"
MEDIAPIPE_INCEPTION_PROJECTION = "mediapipe-inception3-projection"
MEDIAPIPE_VGGISH_MEAN = "mediapipe-vggish-mean"
MEDIAPIPE_VGGISH_PROJECTION = "mediapipe-vggish-projection"
VOCABULARY = VOCABULARY_FILE.name
LABEL_MAP = LABEL_MAP_FILE.name
SEGMENT_LABEL_IDS = SEGMENT_CLASSES_FILE.name
BASELINE_MODEL = "baseline-model"
KERAS_INCEPTION = "keras-inception"

# data.yt8m.org is a Cloud Storage bucket: its own host name answers plain http only, the storage
# host serves the same objects over https.
YT8M_DATA_URL = "https://storage.googleapis.com/data.yt8m.org/"
_MEDIAPIPE_PCA_URL = YT8M_DATA_URL + "pca_matrix_data/"

CATALOGUE: dict[str, OfficialFile] = {
    file.name: file
    for file in (
        OfficialFile(
            name=INCEPTION,
            url="https://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz",
            filename="inception-2015-12-05.tgz",
            size=88931400,  # as printed by TensorFlow's classify_image.py after every download
            description="Inception-v3 GraphDef of 2015 (classify_image_graph_def.pb): YT8M's frame network",
            option=MODELS_DIR_OPTION,
        ),
        OfficialFile(
            name=YT8M_PCA,
            url=YT8M_DATA_URL + "yt8m_pca.tgz",
            filename="yt8m_pca.tgz",
            description="YT8M's RGB PCA: mean.npy, eigenvals.npy, eigenvecs.npy (2048 -> 1024)",
            option=MODELS_DIR_OPTION,
        ),
        OfficialFile(
            name=VGGISH,
            url="https://storage.googleapis.com/audioset/vggish_model.ckpt",
            filename="vggish_model.ckpt",
            description="VGGish checkpoint (TF1, variables vggish/conv1/weights ...): YT8M's audio network",
            option=MODELS_DIR_OPTION,
        ),
        OfficialFile(
            name=VGGISH_PCA,
            url="https://storage.googleapis.com/audioset/vggish_pca_params.npz",
            filename="vggish_pca_params.npz",
            description="AudioSet's VGGish PCA (pca_eigen_vectors, pca_means); fallback audio PCA",
            option="--audio-pca",
        ),
        OfficialFile(
            name=MEDIAPIPE_INCEPTION_MEAN,
            url=_MEDIAPIPE_PCA_URL + "inception3_mean_matrix_data.pb",
            filename="inception3_mean_matrix_data.pb",
            description="MediaPipe's YT8M RGB PCA mean (MatrixData)",
            option=MODELS_DIR_OPTION,
        ),
        OfficialFile(
            name=MEDIAPIPE_INCEPTION_PROJECTION,
            url=_MEDIAPIPE_PCA_URL + "inception3_projection_matrix_data.pb",
            filename="inception3_projection_matrix_data.pb",
            description="MediaPipe's YT8M RGB PCA projection (MatrixData)",
            option=MODELS_DIR_OPTION,
        ),
        OfficialFile(
            name=MEDIAPIPE_VGGISH_MEAN,
            url=_MEDIAPIPE_PCA_URL + "vggish_mean_matrix_data.pb",
            filename="vggish_mean_matrix_data.pb",
            description="MediaPipe's YT8M audio PCA mean (MatrixData)",
            option=MODELS_DIR_OPTION,
        ),
        OfficialFile(
            name=MEDIAPIPE_VGGISH_PROJECTION,
            url=_MEDIAPIPE_PCA_URL + "vggish_projection_matrix_data.pb",
            filename="vggish_projection_matrix_data.pb",
            description="MediaPipe's YT8M audio PCA projection (MatrixData)",
            option=MODELS_DIR_OPTION,
        ),
        VOCABULARY_FILE,
        LABEL_MAP_FILE,
        SEGMENT_CLASSES_FILE,
        OfficialFile(
            name=BASELINE_MODEL,
            url=YT8M_DATA_URL + "models/baseline/saved_model.tar.gz",
            filename="baseline_saved_model.tar.gz",
            description="The starter code's baseline classifier (SavedModel)",
            option=MODELS_DIR_OPTION,
        ),
        OfficialFile(
            name=KERAS_INCEPTION,
            url="https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + KERAS_INCEPTION_FILE,
            filename=KERAS_INCEPTION_FILE,
            description="Keras InceptionV3 ImageNet weights without top, for --weights keras",
            option=MODELS_DIR_OPTION,
        ),
    )
}

# Archives: the folder each is unpacked into (next to the archive) and the members that must be there.
ARCHIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    INCEPTION: ("inception-2015-12-05", (INCEPTION_GRAPH_FILE,)),
    YT8M_PCA: ("yt8m_pca", YT8M_PCA_FILES),
    BASELINE_MODEL: ("baseline_saved_model", (SAVED_MODEL_FILE,)),
}

# What each archive may unpack to at most (bytes): a little above its known content, so that a
# wrong or hostile download is refused before it fills the disk. Inception 2015: the 95.7 MB graph
# plus ImageNet label maps; the YT8M PCA: 2048-d mean, eigenvalues and a 2048x1024 projection.
ARCHIVE_MAX_BYTES: dict[str, int] = {
    INCEPTION: 128 << 20,
    YT8M_PCA: 64 << 20,
    BASELINE_MODEL: 512 << 20,
}
ARCHIVE_MAX_MEMBERS = 1000
MANIFEST_SUFFIX = ".sha256.json"  # next to an unpacked folder: SHA-256 of every member, checked on use

# Names that stand for several entries on the command line.
GROUPS: dict[str, tuple[str, ...]] = {
    "mediapipe-pca": (
        MEDIAPIPE_INCEPTION_MEAN,
        MEDIAPIPE_INCEPTION_PROJECTION,
        MEDIAPIPE_VGGISH_MEAN,
        MEDIAPIPE_VGGISH_PROJECTION,
    ),
}

# Fetched only when asked for by name (or with --all): not needed to extract YT8M features.
OPTIONAL = frozenset({BASELINE_MODEL, KERAS_INCEPTION})
DEFAULT_FETCH = tuple(name for name in CATALOGUE if name not in OPTIONAL)

FetchProgress = Callable[[str, int, "int | None"], None]  # (name, bytes so far, total bytes or None)


class FileStatus(NamedTuple):
    """One catalogue entry as `yt8m models list` shows it."""

    name: str
    present: bool
    path: Path
    size: int | None  # bytes on disk (the archive, or the unpacked folder when only that is there)


def get(name: str) -> OfficialFile:
    """The catalogue entry called `name`; Yt8mError listing the known names otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise Yt8mError(f"unknown model file {name!r}; known: {', '.join(known_names())}") from None


def known_names() -> list[str]:
    """Every name `yt8m models fetch --only` accepts: the entries, then the groups."""
    return [*CATALOGUE, *GROUPS]


def expand(names: Iterable[str] | None, everything: bool = False) -> list[str]:
    """Entry names for `names` (groups expanded, duplicates dropped, order kept).

    None: the default set (`everything=True`: the whole catalogue).
    """
    if names is None:
        return list(CATALOGUE) if everything else list(DEFAULT_FETCH)
    out: list[str] = []
    for name in names:
        for member in GROUPS.get(name, (name,)):
            get(member)
            if member not in out:
                out.append(member)
    return out


def root(directory: str | os.PathLike | None = None) -> Path:
    """The folder official files live in: `directory` if given, else the yt8m cache."""
    return Path(directory).expanduser() if directory is not None else downloads.cache_dir()


def _placed(file: OfficialFile, directory: str | os.PathLike | None) -> OfficialFile:
    """`file` stored under `directory` instead of the cache.

    `downloads` stores a file at `cache_dir() / file.filename`; an absolute filename replaces
    the cache part of that path (pathlib's join rule), so the same checked download lands there.
    """
    if directory is None:
        return file
    return dataclasses.replace(file, filename=str(root(directory).absolute() / file.filename))


def _fetch_hint(name: str, directory: str | os.PathLike | None) -> str:
    where = f" {MODELS_DIR_OPTION} {directory}" if directory is not None else ""
    return f"`yt8m models fetch --only {name}{where}`"


def _member_folder(folder: Path, members: tuple[str, ...]) -> Path | None:
    """The folder at or under `folder` that holds every one of `members`, if any."""
    if not folder.is_dir():
        return None
    if all((folder / m).is_file() for m in members):
        return folder
    for candidate in sorted(folder.rglob(members[0])):
        if all((candidate.parent / m).is_file() for m in members):
            return candidate.parent
    return None


def extracted_dir(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Where archive `name` is unpacked: a folder next to the archive."""
    if name not in ARCHIVES:
        raise ValueError(f"{name} is not an archive")
    return root(directory) / ARCHIVES[name][0]


def manifest_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    """The member-hash manifest written next to archive `name`'s unpacked folder."""
    return extracted_dir(name, directory).with_name(ARCHIVES[name][0] + MANIFEST_SUFFIX)


def _write_manifest(name: str, directory: str | os.PathLike | None) -> None:
    folder = extracted_dir(name, directory)
    hashes = {
        path.relative_to(folder).as_posix(): downloads.sha256_of(path)
        for path in sorted(folder.rglob("*")) if path.is_file()
    }
    write_text(manifest_path(name, directory), json.dumps(hashes, indent=1, sort_keys=True) + "\n")


def _verify_members(name: str, found: Path, directory: str | os.PathLike | None) -> None:
    """Check the members the extractor uses against the manifest written when the archive was unpacked."""
    manifest = manifest_path(name, directory)
    folder = extracted_dir(name, directory)
    if not manifest.is_file() or not found.is_relative_to(folder):
        return  # unpacked by another tool (or laid out by hand): nothing recorded to compare with
    try:
        hashes = json.loads(manifest.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        raise Yt8mError(f"{manifest}: unreadable; run {_fetch_hint(name, directory)} with --force") from None
    for member in ARCHIVES[name][1]:
        path = found / member
        expected = hashes.get(path.relative_to(folder).as_posix())
        actual = downloads.sha256_of(path)
        if expected is not None and actual != expected:
            raise Yt8mError(
                f"{path}: changed since it was fetched (SHA-256 {actual[:16]}... instead of {expected[:16]}...); "
                f"run {_fetch_hint(name, directory)} with --force"
            )


def _unpack(name: str, archive: Path, directory: str | os.PathLike | None) -> Path:
    """Safely extract `archive` beside itself, record its member hashes; the folder holding the members."""
    folder_name, members = ARCHIVES[name]
    destination = extracted_dir(name, directory)
    remove_path(manifest_path(name, directory))
    downloads.safe_extract(
        archive, destination, max_bytes=ARCHIVE_MAX_BYTES.get(name, downloads.DEFAULT_MAX_EXPANDED_BYTES),
        max_members=ARCHIVE_MAX_MEMBERS,
    )
    found = _member_folder(destination, members)
    if found is None:
        raise Yt8mError(f"{archive}: does not contain {', '.join(members)} (is it the official {get(name).filename}?)")
    _write_manifest(name, directory)
    if SAVED_MODEL_FILE in members:  # a checked catalogue download: its model may run
        trust.mark_trusted(found, f"yt8m models fetch {name}")
    return found


def locate(name: str, models_dir: str | os.PathLike | None = None) -> Path:
    """The usable local copy of catalogue entry `name`; never downloads.

    Plain files: the file (checked against its published or pinned SHA-256). Archives: the folder
    holding the needed members, unpacking the archive first if only the archive is there.
    Missing: Yt8mError naming the file and the command that fetches it.
    """
    file = get(name)
    base = root(models_dir)
    if name not in ARCHIVES:
        path = base / file.filename
        if not path.is_file():
            raise Yt8mError(
                f"{file.filename} ({name}) is not in {base}; run {_fetch_hint(name, models_dir)}"
                + (f" or give the folder holding it with {MODELS_DIR_OPTION}" if models_dir is None else "")
            )
        downloads.verify(file, path)
        return path
    folder_name, members = ARCHIVES[name]
    found = _member_folder(base / folder_name, members)
    if found is not None:
        _verify_members(name, found, models_dir)
        return found
    if all((base / m).is_file() for m in members):  # the starter code's layout: everything side by side
        return base
    archive = base / file.filename
    if archive.is_file():
        downloads.verify(file, archive)
        return _unpack(name, archive, models_dir)
    raise Yt8mError(
        f"{', '.join(members)} ({name}, from {file.filename}) not found in {base}; run "
        f"{_fetch_hint(name, models_dir)}"
        + (f" or give the folder holding it with {MODELS_DIR_OPTION}" if models_dir is None else "")
    )


def find_member(name: str, member: str, models_dir: str | os.PathLike | None = None) -> Path:
    """One member of archive `name` (e.g. `classify_image_graph_def.pb` of `inception`)."""
    if name not in ARCHIVES or member not in ARCHIVES[name][1]:
        raise ValueError(f"{member} is not a known member of {name}")
    return locate(name, models_dir) / member


def is_present(name: str, models_dir: str | os.PathLike | None = None) -> bool:
    """Whether `locate(name, models_dir)` would find the file (without unpacking or hashing)."""
    file = get(name)
    base = root(models_dir)
    if name not in ARCHIVES:
        return (base / file.filename).is_file()
    folder_name, members = ARCHIVES[name]
    return (
        _member_folder(base / folder_name, members) is not None
        or all((base / m).is_file() for m in members)
        or (base / file.filename).is_file()
    )


def fetch(
    name: str,
    directory: str | os.PathLike | None = None,
    force: bool = False,
    progress: FetchProgress | None = None,
) -> Path:
    """Download entry `name` (checked) into the cache or `directory`, unpack archives; its local path."""
    file = get(name)
    callback = None if progress is None else (lambda done, total: progress(name, done, total))
    path = downloads.fetch(_placed(file, directory), force=force, progress=callback)
    if name not in ARCHIVES:
        return path
    folder_name, members = ARCHIVES[name]
    found = _member_folder(extracted_dir(name, directory), members)
    if found is not None and not force:
        return found
    return _unpack(name, path, directory)


def fetch_all(
    only: list[str] | None = None,
    progress: FetchProgress | None = None,
    directory: str | os.PathLike | None = None,
    force: bool = False,
    everything: bool = False,
) -> list[Path]:
    """Fetch the entries named in `only` (groups allowed; None: the default set), in order.

    Stops at the first failure with its one-line Yt8mError (offline, checksum mismatch ...).
    """
    names = expand(only, everything=everything)
    return [fetch(name, directory=directory, force=force, progress=progress) for name in names]


def _disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def status(models_dir: str | os.PathLike | None = None) -> list[FileStatus]:
    """Every catalogue entry: whether it is present in the cache (or `models_dir`), where, how big."""
    rows = []
    base = root(models_dir)
    for name, file in CATALOGUE.items():
        path = base / file.filename
        present = is_present(name, models_dir)
        if name in ARCHIVES and not path.is_file() and present:
            folder_name, members = ARCHIVES[name]
            path = _member_folder(base / folder_name, members) or base
            size = sum((path / m).stat().st_size for m in members) if path == base else _disk_size(path)
        else:
            size = path.stat().st_size if path.is_file() else None
        rows.append(FileStatus(name, present, path, size))
    return rows
