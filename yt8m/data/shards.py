"""Record shards on disk: one file or `OUT-00000-of-000NN.tfrecord` shards, never a partial file.

The rules every run into an output follows (one module owns them, the extract job and the
library call them):

- An existing output (the single file, any final shard, or hidden parts an interrupted run left)
  is never touched unless the run says `overwrite=True` (replace it) or `resume=True` (continue
  it); `check_output` refuses with one line before any work.
- An output is replaced only by a complete, successful run: records go to hidden part files
  (`.NAME.part-00003.inprogress`, then `.complete` once closed and flushed to disk), and only
  `close()` gives them their final names. A run that wrote no record changes nothing.
- One run per output at a time: `.NAME.lock` next to the output names the run that holds it;
  the lock of a dead process on this host is taken over.
- Resuming keeps every complete record of the earlier run, each id once: complete shards stay
  as they are, the complete records of a part cut by a kill are copied forward, and the final
  names always say the true shard count. A crash at any point of `close()` leaves files that
  the next `resume` recognises.
- An `overwrite` run lists the files it replaces in `.NAME.replacing`; they stay readable until
  the run closes, and a `resume` after a killed `overwrite` run continues replacing them.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from yt8m._tf import import_tensorflow_quietly
from yt8m.core import VideoFeatures, Yt8mError
from yt8m.data.files import fsync_dir, fsync_path, remove_path, write_text
from yt8m.data.records import complete_records, parse_record, record_layout, serialize

SHARD_PATTERN = "{stem}-{index:05d}-of-{count:05d}{suffix}"
_SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})(?P<suffix>\.[^.]*)?$")
_PART_RE = re.compile(r"^\.(?P<name>.+)\.part-(?P<seq>\d+)\.(?P<state>inprogress|complete)$")
# Hidden names of earlier yt8m versions: `.STEM-00000.complete` / `.renaming` / `.inprogress`, `.NAME.inprogress`.
_LEGACY_RE = re.compile(r"^\.(?P<stem>.+)-(?P<index>\d{5})\.(?P<state>complete|renaming|inprogress)$")
IN_PROGRESS = "inprogress"
COMPLETE = "complete"
LOCK_SUFFIX = ".lock"
REPLACING_SUFFIX = ".replacing"

# Test hook: `YT8M_FAULT_INJECTION=POINT[:N]` ends the process (os._exit, like kill -9) at the N-th
# (default first) time the writer reaches POINT; `enospc:N` makes the N-th record write fail with
# "no space left on device". Points: record, finish-part, close-discarded, close-staged, close-renamed.
FAULT_ENV = "YT8M_FAULT_INJECTION"
FAULT_EXIT_CODE = 137
_fault_counts: dict[str, int] = {}

OVERWRITE_OR_RESUME = "pass `overwrite=True` to replace it or `resume=True` to continue it"


def _fault(point: str) -> None:
    """The fault-injection hook (see FAULT_ENV); a no-op unless the variable is set."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != ("enospc" if point == "record-write" else point):
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if _fault_counts[name] != int(nth or 1):
        return
    if name == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os._exit(FAULT_EXIT_CODE)


def shard_name(out_path: str | os.PathLike, index: int, count: int) -> Path:
    """`OUT-00000-of-00003.tfrecord` for shard `index` of `count` next to `out_path`."""
    out = Path(out_path)
    return out.with_name(SHARD_PATTERN.format(stem=out.stem, index=index, count=count, suffix=out.suffix))


def part_name(out_path: str | os.PathLike, seq: int, state: str) -> Path:
    """The hidden name of part `seq` of `out_path` while `state` is `inprogress` or `complete`."""
    out = Path(out_path)
    return out.with_name(f".{out.name}.part-{seq:05d}.{state}")


def lock_path(out_path: str | os.PathLike) -> Path:
    """`.NAME.lock` next to the output: held by the run writing it."""
    out = Path(out_path)
    return out.with_name(f".{out.name}{LOCK_SUFFIX}")


def _replacing_path(out: Path) -> Path:
    return out.with_name(f".{out.name}{REPLACING_SUFFIX}")


# ----------------------------------------------------------------------------- what is on disk


@dataclass(frozen=True)
class _Part:
    """One file of an output: `kind` is single (the final file), shard (a final shard),
    complete (a hidden closed part) or partial (a hidden part cut by an interruption)."""

    path: Path
    kind: str
    order: tuple[int, int]
    seq: int = -1

    @property
    def final(self) -> bool:
        return self.kind in ("single", "shard")


_KIND_ORDER = {"shard": 0, "single": 1, "complete": 2, "partial": 3}


def _identity(path: Path) -> list:
    stat = path.stat()
    return [path.name, stat.st_ino, stat.st_size, stat.st_mtime_ns]


def _replaced(out: Path) -> list[list]:
    """Identities of the files an `overwrite` run replaces (empty when none is under way)."""
    marker = _replacing_path(out)
    if not marker.is_file():
        return []
    try:
        return [list(item) for item in json.loads(marker.read_text(encoding="utf-8"))["files"]]
    except (ValueError, KeyError, TypeError, OSError):
        raise Yt8mError(f"{marker}: unreadable; delete it and {OVERWRITE_OR_RESUME}") from None


def _all_parts(out: Path) -> list[_Part]:
    """Every file an earlier run left for `out`, in output order (final shards first)."""
    if not out.parent.is_dir():
        return []
    found: list[_Part] = []
    for path in out.parent.iterdir():
        name = path.name
        if not path.is_file():
            continue
        if name == out.name:
            found.append(_Part(path, "single", (_KIND_ORDER["single"], 0)))
            continue
        if (match := _SHARD_RE.match(name)) and match["stem"] == out.stem and (match["suffix"] or "") == out.suffix:
            found.append(_Part(path, "shard", (_KIND_ORDER["shard"], int(match["index"]))))
        elif (match := _PART_RE.match(name)) and match["name"] == out.name:
            kind = "partial" if match["state"] == IN_PROGRESS else "complete"
            seq = int(match["seq"])
            found.append(_Part(path, kind, (_KIND_ORDER[kind], seq), seq))
        elif (match := _LEGACY_RE.match(name)) and match["stem"] == out.stem:
            kind = "partial" if match["state"] == IN_PROGRESS else "complete"
            found.append(_Part(path, kind, (_KIND_ORDER[kind], int(match["index"]))))
        elif name == f".{out.name}.{IN_PROGRESS}":
            found.append(_Part(path, "partial", (_KIND_ORDER["partial"], -1)))
    return sorted(found, key=lambda part: part.order)


def _split_parts(out: Path) -> tuple[list[_Part], list[_Part]]:
    """(parts that belong to the output, parts an unfinished `overwrite` run is replacing)."""
    replaced = {tuple(item) for item in _replaced(out)}
    keep, gone = [], []
    for part in _all_parts(out):
        (gone if tuple(_identity(part.path)) in replaced else keep).append(part)
    return keep, gone


def _next_seq(out: Path) -> int:
    seqs = [part.seq for part in _all_parts(out)]
    seqs += [int(m["seq"]) for item in _replaced(out) if (m := _PART_RE.match(item[0]))]
    return max(seqs, default=-1) + 1


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


# ----------------------------------------------------------------------------- the lock


class OutputLock:
    """`.NAME.lock` (pid, host, start time): one run per output; a dead local holder is taken over."""

    def __init__(self, out_path: str | os.PathLike) -> None:
        self.out = Path(out_path)
        self.path = lock_path(self.out)
        self.held = False

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def holder(self) -> dict | None:
        """The live run holding the lock (its pid/host/started), or None (no lock, or a stale one)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            pid, host = int(info["pid"]), str(info["host"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError):
            return None  # half-written by a run killed at that instant: stale
        if host == socket.gethostname() and not self._alive(pid):
            return None
        return info

    def describe(self, info: dict) -> str:
        return (
            f"{self.out}: another run is writing it (pid {info.get('pid')} on {info.get('host')}, "
            f"started {info.get('started')}); wait for it to end, or delete {self.path} if that run is gone"
        )

    def check(self) -> None:
        """Refuse when another live run holds the lock (does not take it)."""
        info = self.holder()
        if info is not None:
            raise Yt8mError(self.describe(info))

    def acquire(self) -> "OutputLock":
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None:
                    raise Yt8mError(self.describe(holder)) from None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()  # stale: its run is gone
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(info, handle)
                handle.flush()
                os.fsync(handle.fileno())
            self.held = True
            return self
        raise Yt8mError(f"{self.out}: could not take the lock {self.path}; another run keeps taking it")

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.held = False


# ----------------------------------------------------------------------------- checks before work


def _shard_size_of(parts: list[_Part]) -> int:
    return max((record_layout(part.path).count for part in parts if part.kind == "shard"), default=1)


def _check_folder(out: Path) -> None:
    if out.is_dir():
        raise Yt8mError(f"{out}: is a folder; give a file name for the records, e.g. {out / 'features.tfrecord'}")
    folder = out.parent
    while not folder.exists():
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise Yt8mError(f"{out}: cannot be written: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Yt8mError(f"{out}: cannot be written: no permission to write in {folder}")


def check_output(
    out_path: str | os.PathLike,
    shard_size: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> None:
    """Refuse, before any work, a run that could not finish or would destroy an existing output.

    One-line `Yt8mError` for: `overwrite` with `resume`; a bad `shard_size`; an output that is a
    folder or in a folder that cannot be written; an output another live run holds; an existing
    output (single file, shards or an interrupted run's hidden parts) without `overwrite` or
    `resume`; `resume` of a single file as shards or of shards as a single file. A different
    `shard_size` between sharded runs is fine: earlier shards are kept as they are.
    """
    out = Path(out_path)
    if overwrite and resume:
        raise Yt8mError(f"{out}: give either `overwrite=True` or `resume=True`, not both")
    if shard_size is not None and shard_size < 1:
        raise Yt8mError(f"`shard_size` must be >= 1, got {shard_size}")
    _check_folder(out)
    OutputLock(out).check()
    if overwrite:
        return
    parts, _ = _split_parts(out)
    if not parts:
        return
    finals = [part for part in parts if part.final]
    if not resume:
        if finals:
            what = "exists" if any(p.kind == "single" for p in finals) else f"exists ({len(finals)} shard file(s))"
        else:
            what = f"has {len(parts)} hidden part file(s) of an interrupted run"
        raise Yt8mError(f"{out}: {what}; {OVERWRITE_OR_RESUME}")
    if shard_size and any(part.kind == "single" for part in parts):
        raise Yt8mError(
            f"{out}: the earlier run wrote a single file; resume it without `shard_size`, "
            "or pass `overwrite=True` to write shards instead"
        )
    if not shard_size and any(part.kind == "shard" for part in parts):
        size = _shard_size_of(parts)
        raise Yt8mError(
            f"{out}: the earlier run wrote shards ({shard_name(out, 0, len([p for p in parts if p.kind == 'shard'])).name} ...); "
            f"resume it with `shard_size` {size}, or pass `overwrite=True` to replace it"
        )


# ----------------------------------------------------------------------------- reading earlier runs


def _ids_of(records: list[bytes], source: Path) -> list[str]:
    return [parse_record(data, source=str(source), index=index).video_id for index, data in enumerate(records)]


def _read_part(part: _Part) -> tuple[list[bytes], bool]:
    """A part's complete records and whether the file ends exactly after them."""
    records, layout = complete_records(part.path)
    return records, layout.complete and part.kind != "partial"


# (path, inode, size, mtime) -> (ids, whole): `existing_ids` and the writer read each part once.
_ids_cache: dict[tuple, tuple[list[str], bool]] = {}


def _part_ids(part: _Part) -> tuple[list[str], bool]:
    """The ids of a part's complete records, and whether the part is whole (cached per file version)."""
    key = (str(part.path), *_identity(part.path)[1:], part.kind)
    if key not in _ids_cache:
        records, whole = _read_part(part)
        _ids_cache[key] = (_ids_of(records, part.path), whole)
    return _ids_cache[key]


def existing_ids(out_path: str | os.PathLike) -> set[str]:
    """Video ids a resumed run into `out_path` keeps (every complete record, final or hidden)."""
    out = Path(out_path)
    parts, _ = _split_parts(out)
    ids: set[str] = set()
    for part in parts:
        ids.update(_part_ids(part)[0])
    return ids


def output_files(out_path: str | os.PathLike) -> list[Path]:
    """The final files of `out_path` as they are now (the single file or the shards, in order)."""
    return [part.path for part in _all_parts(Path(out_path)) if part.final]


# ----------------------------------------------------------------------------- the writer


class ShardWriter:
    """Write records to one file or to shards of `shard_size` records (see the module docstring).

    `check_output` runs first and the output's lock is taken (released by `close()`/`abort()`).
    `resume=True` continues an earlier run (each id kept once); `overwrite=True` replaces an
    existing output when, and only when, this run closes successfully. `close()` after zero new
    records changes nothing (a resume still finishes what the earlier run completed).
    `records_written` counts this run's records (not the ones carried over).
    """

    def __init__(
        self,
        out_path: str | os.PathLike,
        shard_size: int | None = None,
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        self.out_path = Path(out_path)
        self.shard_size = shard_size
        self.resume = resume
        self.overwrite = overwrite
        check_output(self.out_path, shard_size, overwrite=overwrite, resume=resume)
        self._made_dirs = _missing_folders(self.out_path.parent)
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = OutputLock(self.out_path).acquire()
        self._writer = None
        self._current: Path | None = None
        self._current_seq = -1
        self._in_part = 0
        self._finished: list[Path] = []  # this run's closed parts
        self._kept: list[Path] = []  # earlier files that stay part of the output as they are
        self._discard: list[Path] = []  # earlier files removed when this run closes
        self._carried = 0  # earlier records copied forward
        self._to_carry: list[tuple[_Part, set[str]]] = []  # earlier parts and the ids still to copy forward
        self._earlier_clean = True  # resume: the earlier output is final and whole, nothing to redo
        self._marker_before: str | None = None
        self._closed: list[Path] | None = None
        self.records_written = 0
        try:
            self._seq = _next_seq(self.out_path)
            if overwrite:
                self._start_replacing()
            elif resume:
                self._take_over_earlier_run()
        except BaseException:
            self._close_writer()
            self._lock.release()
            raise

    # -- setup

    def _start_replacing(self) -> None:
        """Record which files this run replaces (kept readable until `close()`)."""
        marker = _replacing_path(self.out_path)
        if marker.is_file():
            self._marker_before = marker.read_text(encoding="utf-8")
        listed = {tuple(item) for item in _replaced(self.out_path)}
        parts = _all_parts(self.out_path)
        identities = [list(item) for item in listed if self.out_path.with_name(item[0]).exists()]
        identities += [_identity(part.path) for part in parts if tuple(_identity(part.path)) not in listed]
        self._discard = [part.path for part in parts]
        if identities:
            write_text(marker, json.dumps({"files": identities}) + "\n")

    def _take_over_earlier_run(self) -> None:
        """Keep complete earlier shards; plan to copy forward the records of cut parts, of a single file
        and of parts holding ids seen before (copied before the first new record, see `_carry`)."""
        parts, replaced = _split_parts(self.out_path)
        self._discard = [part.path for part in replaced]
        seen: set[str] = set()
        for part in parts:
            ids, whole = _part_ids(part)
            if replaced or not (whole and part.final) or len(set(ids)) != len(ids) or seen & set(ids):
                self._earlier_clean = False
            if whole and self.shard_size and part.kind != "single" and len(set(ids)) == len(ids) and not seen & set(ids):
                self._kept.append(part.path)
                seen.update(ids)
                continue
            wanted = {video_id for video_id in ids if video_id not in seen}
            seen.update(wanted)
            self._to_carry.append((part, wanted))
            self._discard.append(part.path)

    def _carry(self) -> None:
        """Copy forward the planned earlier records (done before this run's first record, or at close)."""
        plan, self._to_carry = self._to_carry, []
        for part, wanted in plan:
            if not wanted:
                continue
            records, _ = _read_part(part)
            for video_id, data in zip(_part_ids(part)[0], records):
                if video_id in wanted:
                    wanted.discard(video_id)
                    self._write(data)
                    self._carried += 1

    # -- writing

    def _open(self) -> None:
        tf = import_tensorflow_quietly()
        self._current_seq = self._seq
        self._seq += 1
        self._current = part_name(self.out_path, self._current_seq, IN_PROGRESS)
        try:
            self._writer = tf.io.TFRecordWriter(str(self._current))
        except (OSError, tf.errors.OpError) as error:
            raise self._write_error(error) from None
        self._in_part = 0

    def _write_error(self, error: BaseException) -> Yt8mError:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC or "space left" in str(error).lower():
            reason = "no space left on device"
        else:
            reason = getattr(error, "message", None) or getattr(error, "strerror", None) or str(error)
        return Yt8mError(
            f"{self.out_path}: cannot write ({reason}); the complete records so far are kept: "
            "fix the cause and rerun with `resume=True`"
        )

    def _close_writer(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with contextlib.suppress(Exception):
                writer.close()

    def _finish_current(self) -> None:
        if self._writer is None or self._current is None:
            return
        tf = import_tensorflow_quietly()
        try:
            self._writer.close()
        except (OSError, tf.errors.OpError) as error:
            self._writer = None
            raise self._write_error(error) from None
        self._writer = None
        fsync_path(self._current)
        _fault("finish-part")
        done = part_name(self.out_path, self._current_seq, COMPLETE)
        os.replace(self._current, done)
        fsync_dir(done.parent)
        self._finished.append(done)
        self._current = None

    def _write(self, data: bytes) -> None:
        if self._writer is None:
            self._open()
        tf = import_tensorflow_quietly()
        try:
            _fault("record-write")
            self._writer.write(data)
        except (OSError, tf.errors.OpError) as error:
            raise self._write_error(error) from None
        self._in_part += 1
        if self.shard_size and self._in_part >= self.shard_size:
            self._finish_current()

    def write(self, features: VideoFeatures) -> None:
        self.write_serialized(serialize(features))

    def write_serialized(self, data: bytes) -> None:
        if self._to_carry:
            self._carry()
        self._write(data)
        self.records_written += 1
        _fault("record")

    # -- finishing

    def _restore_marker(self) -> None:
        marker = _replacing_path(self.out_path)
        if self._marker_before is not None:
            write_text(marker, self._marker_before)
        else:
            remove_path(marker)

    def close(self) -> list[Path]:
        """Finish the last part and give every part its final name; returns the final paths.

        Zero records written: nothing changes and [] is returned (with `resume`: the earlier
        run's complete records are finished into final files, which are returned).
        """
        if self._closed is not None:
            return self._closed
        try:
            if self.records_written == 0 and (not self.resume or self._earlier_clean or not self._earlier_records()):
                self._drop_own_parts()
                if self.overwrite:
                    self._restore_marker()
                self._closed = output_files(self.out_path) if self.resume else []
                return self._closed
            self._carry()
            self._finish_current()
            self._closed = self._finalize()
            return self._closed
        except BaseException:
            self._close_writer()
            raise
        finally:
            self._lock.release()

    def _earlier_records(self) -> bool:
        """Whether a resume holds earlier records in hidden parts that `close()` should finish."""
        return (
            bool(self._carried)
            or any(wanted for _, wanted in self._to_carry)
            or any(not _SHARD_RE.match(path.name) for path in self._kept)
        )

    def _drop_own_parts(self) -> None:
        """Undo this run: its parts, and the folders it created if they are empty again."""
        self._close_writer()
        for path in [*self._finished, *([self._current] if self._current else [])]:
            remove_path(path)
        self._finished, self._current = [], None
        self._lock.release()
        for folder in self._made_dirs:
            with contextlib.suppress(OSError):
                folder.rmdir()

    def _finalize(self) -> list[Path]:
        out = self.out_path
        ordered = [*self._kept, *self._finished]
        keep = set(ordered)
        if not self.shard_size:
            fsync_path(ordered[0])
            os.replace(ordered[0], out)
            fsync_dir(out.parent)
            _fault("close-renamed")
            for path in self._discard:
                if path != out:
                    remove_path(path)
            remove_path(_replacing_path(out))
            fsync_dir(out.parent)
            return [out]
        for path in self._discard:
            if path not in keep:
                remove_path(path)
        fsync_dir(out.parent)
        _fault("close-discarded")
        remove_path(_replacing_path(out))
        count = len(ordered)
        targets = [shard_name(out, index, count) for index in range(count)]
        staged = []
        for path, target in zip(ordered, targets):  # phase 1: final-named files out of the way
            if _SHARD_RE.match(path.name) and path != target:
                hidden = part_name(out, self._seq, COMPLETE)
                self._seq += 1
                os.replace(path, hidden)
                path = hidden
            staged.append(path)
        fsync_dir(out.parent)
        _fault("close-staged")
        for path, target in zip(staged, targets):  # phase 2: final names with the true count
            if path != target:
                os.replace(path, target)
                _fault("close-renamed")
        fsync_dir(out.parent)
        return targets

    def abort(self) -> None:
        """Stop writing: the part being written keeps its complete records for `resume`; nothing is renamed.

        With no record written by this run, everything is as before the run.
        """
        if self._closed is not None:
            return
        try:
            self._close_writer()
            if self.records_written == 0:  # records carried over are still in the earlier files
                self._drop_own_parts()
                if self.overwrite:
                    self._restore_marker()
            elif self._current is not None:
                fsync_path(self._current)
        finally:
            self._lock.release()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
