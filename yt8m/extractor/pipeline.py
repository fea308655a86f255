"""Video files -> `VideoFeatures`: decoding threads feed batched networks, PCA and quantization.

Decode threads (`workers`) each take one video at a time and stream its sampled frames, together
with the matching log-mel audio example (example k starts at frame k's target time k / fps), into
a bounded queue. The calling thread runs the networks: frames are batched ACROSS videos
(`batch_size`, grouped by frame size since a batch needs one shape), so short clips still fill
batches, and decoding the next frames overlaps with inference. Memory is bounded by the queue
and the batches, never by the length of a video: frames are dropped once the network has seen
them, and a video keeps only its quantized rows (1152 bytes per second).

Per frame: Inception-v3 -> PCA -> quantize (`rgb`); VGGish -> PCA -> quantize (`audio`). `rgb`
and `audio` always have one row per sampled frame: audio examples beyond the end of the audio
track are silence, extra ones are dropped. Without an audio stream (or with audio disabled),
every audio row is the neutral byte 127 (~0.0 after dequantization, REFERENCE.md §2) and the
record says `audio_missing = 1`.

Video-level `mean_rgb` / `mean_audio` are the means over frames of the PCA'd float features
before clipping and quantization (how the YT8M video-level features were made: averages of the
frame features rather than of their bytes); with no audio `mean_audio` is zeros.

Each record's extras: `weights` (the backbone weights kind), `yt8m_compatible` (1 only for the
official networks and PCA), `audio_missing`, `audio` (present / missing / disabled),
`sampling` and `fps`. A file that fails (unreadable, not a video, truncated, no frames, broken
audio) becomes an `ExtractResult` with a one-line `error` naming it; the others go on. The
library prints nothing: pass a `progress` callback.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.core import MAX_FRAMES, VideoFeatures, Yt8mError
from yt8m.extractor import audio as audio_lib
from yt8m.extractor import video as video_lib
from yt8m.pca.quantization import NEUTRAL_BYTE, quantize

DEFAULT_BATCH_SIZE = 32
DEFAULT_WORKERS = 1
# Decoded frames waiting for the networks: this many batches at most. With the batch being
# assembled and the one running, about 3 x batch_size frames are in memory at once.
QUEUE_BATCHES = 1
PENDING_BATCHES = 2  # frames held across shape groups before the largest group is run anyway
POLL_SECONDS = 0.1  # how often a blocked decode thread checks whether it should stop
AUDIO_PRESENT = "present"
AUDIO_MISSING = "missing"
AUDIO_DISABLED = "disabled"


@dataclass(frozen=True)
class VideoInput:
    """One file to extract, the record id it gets and its class indices."""

    path: Path
    video_id: str
    labels: tuple[int, ...] = ()


@dataclass
class ExtractResult:
    """The outcome for one input: features, or a one-line error naming the file."""

    input: VideoInput
    features: VideoFeatures | None = None
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0  # seconds of video covered by the sampled frames (frames / fps)
    audio: str = ""  # AUDIO_PRESENT / AUDIO_MISSING / AUDIO_DISABLED

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ExtractProgress:
    """Passed to the progress callback after every network batch and every finished video."""

    videos_done: int
    videos_failed: int
    frames_done: int
    result: ExtractResult | None = None  # set when a video has just finished


@dataclass
class ExtractStats:
    """Where the time went (seconds), for benchmarks."""

    frames: int = 0
    audio_examples: int = 0
    inception_seconds: float = 0.0
    vggish_seconds: float = 0.0
    postprocess_seconds: float = 0.0  # PCA + quantization
    waiting_seconds: float = 0.0  # the network thread waiting for decoded frames
    wall_seconds: float = 0.0


# ----------------------------------------------------------------------------- messages


@dataclass
class _Start:
    slot: int
    item: VideoInput


@dataclass
class _Frame:
    slot: int
    index: int
    image: np.ndarray
    log_mel: np.ndarray | None


@dataclass
class _End:
    slot: int
    frames: int
    audio: str


@dataclass
class _Failed:
    slot: int
    message: str


@dataclass
class _Crashed:
    error: BaseException


class _WorkerDone:
    pass


class _Stopped(Exception):
    """Raised inside a decode thread when the consumer has gone away."""


@dataclass
class _VideoState:
    item: VideoInput
    rgb: list[np.ndarray | None] = field(default_factory=list)
    audio: list[np.ndarray | None] = field(default_factory=list)
    rgb_sum: np.ndarray | None = None
    audio_sum: np.ndarray | None = None
    missing: int = 0  # frames whose network outputs are still to come
    frames: int | None = None  # known once the decoder has finished
    audio_state: str = ""
    error: str | None = None

    def complete(self) -> bool:
        return self.error is not None or (self.frames is not None and self.missing == 0)


def _grow(rows: list, index: int) -> None:
    if len(rows) <= index:
        rows.extend([None] * (index + 1 - len(rows)))


class FeatureExtractor:
    """Extract YT8M frame features from video files with the given `FeatureModels`.

    `fps` frames per second are sampled by `sampling` (`mediapipe` or `legacy`, see
    yt8m.extractor.video), at most `max_frames` per video (0 = all). `audio=False` (or models
    without VGGish) writes neutral audio rows. `batch_size` frames go through the networks at
    once; `workers` threads decode videos.
    """

    def __init__(
        self,
        models: Any,
        fps: float = video_lib.DEFAULT_FPS,
        max_frames: int = MAX_FRAMES,
        sampling: str = video_lib.DEFAULT_SAMPLING,
        audio: bool = True,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        if not (fps > 0):
            raise Yt8mError(f"--fps must be > 0, got {fps}")
        if max_frames < 0:
            raise Yt8mError(f"--max-frames must be >= 0 (0 = no limit), got {max_frames}")
        if batch_size < 1:
            raise Yt8mError(f"--batch-size must be >= 1, got {batch_size}")
        if workers < 1:
            raise Yt8mError(f"--workers must be >= 1, got {workers}")
        self.models = models
        self.fps = float(fps)
        self.max_frames = int(max_frames)
        self.sampling = video_lib.check_sampling(sampling)
        self.audio_enabled = bool(audio) and getattr(models, "vggish", None) is not None
        self.audio_pca = getattr(models, "audio_pca", None) if self.audio_enabled else None
        if self.audio_enabled and self.audio_pca is None:
            raise Yt8mError("audio features need an audio PCA (models.audio_pca is missing)")
        self.batch_size = int(batch_size)
        self.workers = int(workers)
        self.stats = ExtractStats()

    # ------------------------------------------------------------------ decode threads

    def _decode_video(self, slot: int, item: VideoInput, put: Callable[[Any], None]) -> None:
        """Stream one video's frames (+ audio examples) into the queue; errors become `_Failed`."""
        frames = video_lib.iter_frames(item.path, self.fps, self.sampling, self.max_frames)
        examples: Iterator[np.ndarray] | None = None
        try:
            try:
                first = next(frames)
            except StopIteration:  # pragma: no cover - iter_frames raises instead
                raise Yt8mError(f"{item.path}: no video frames could be decoded") from None
            state = AUDIO_DISABLED
            if self.audio_enabled:
                state = AUDIO_PRESENT if audio_lib.has_audio(item.path) else AUDIO_MISSING
            if state == AUDIO_PRESENT:
                examples = audio_lib.iter_audio_examples(item.path, hop_seconds=1.0 / self.fps)
            real_examples = 0
            count = 0
            for frame in itertools.chain([first], frames):
                log_mel = None
                if examples is not None:
                    log_mel = next(examples, None)
                    if log_mel is None:  # the audio track is shorter than the video: silence
                        log_mel = audio_lib.silence_example()
                        examples = iter(())
                    else:
                        real_examples += 1
                put(_Frame(slot, count, frame.image, log_mel))
                count += 1
            if state == AUDIO_PRESENT and real_examples == 0:
                state = AUDIO_MISSING  # an audio stream without any decodable sound
            put(_End(slot, count, state))
        except Yt8mError as error:
            put(_Failed(slot, str(error)))
        finally:
            frames.close()
            if examples is not None and hasattr(examples, "close"):
                examples.close()

    def _worker(self, jobs: Iterator[tuple[int, VideoInput]], lock: threading.Lock,
                out: queue.Queue, stop: threading.Event) -> None:
        def put(message: Any) -> None:
            while not stop.is_set():
                try:
                    out.put(message, timeout=POLL_SECONDS)
                    return
                except queue.Full:
                    continue
            raise _Stopped

        try:
            while not stop.is_set():
                with lock:
                    job = next(jobs, None)
                if job is None:
                    break
                put(_Start(*job))
                self._decode_video(job[0], job[1], put)
            put(_WorkerDone())
        except _Stopped:
            return
        except BaseException as error:  # a bug, not a bad file: surface it in the main thread
            try:
                put(_Crashed(error))
            except _Stopped:
                pass

    # ------------------------------------------------------------------ networks

    def _run(self, kind: str, batch: list[tuple[int, int, np.ndarray]], states: dict[int, _VideoState]) -> None:
        """Network -> PCA -> quantize for one batch of frames (`rgb`) or log-mel examples (`audio`)."""
        network, pca = (self.models.inception, self.models.rgb_pca) if kind == "rgb" else (self.models.vggish, self.audio_pca)
        inputs = np.stack([array for _, _, array in batch])
        started = time.perf_counter()
        embeddings = np.asarray(network(inputs), dtype=np.float32)
        middle = time.perf_counter()
        projected = pca.apply(embeddings)
        quantized = quantize(projected)
        self.stats.postprocess_seconds += time.perf_counter() - middle
        if kind == "rgb":
            self.stats.inception_seconds += middle - started
            self.stats.frames += len(batch)
        else:
            self.stats.vggish_seconds += middle - started
            self.stats.audio_examples += len(batch)
        for row, (slot, index, _) in enumerate(batch):
            state = states.get(slot)
            if state is None or state.error is not None:  # the video failed meanwhile
                continue
            rows, total = (state.rgb, state.rgb_sum) if kind == "rgb" else (state.audio, state.audio_sum)
            rows[index] = quantized[row]
            total = projected[row].astype(np.float64) + (0.0 if total is None else total)
            if kind == "rgb":
                state.rgb_sum = total
            else:
                state.audio_sum = total
            state.missing -= 1

    # ------------------------------------------------------------------ assembly

    def _extras(self, audio_state: str) -> dict[str, Any]:
        return {
            "weights": str(getattr(self.models, "weights", "unknown")),
            "yt8m_compatible": int(bool(getattr(self.models, "compatible_with_yt8m", False))),
            "audio_missing": int(audio_state != AUDIO_PRESENT),
            "audio": audio_state,
            "sampling": self.sampling,
            "fps": self.fps,
        }

    def _finish(self, state: _VideoState) -> ExtractResult:
        item = state.item
        if state.error is not None:
            return ExtractResult(item, error=state.error, audio=state.audio_state)
        frames = int(state.frames or 0)
        rgb = np.stack(state.rgb[:frames]).astype(np.uint8)
        audio_size = self.audio_pca.output_dim if self.audio_pca is not None else _audio_size(self.models)
        if state.audio_state == AUDIO_PRESENT:
            audio = np.stack(state.audio[:frames]).astype(np.uint8)
            mean_audio = (state.audio_sum / frames).astype(np.float32)
        else:
            audio = np.full((frames, audio_size), NEUTRAL_BYTE, dtype=np.uint8)
            mean_audio = np.zeros(audio_size, dtype=np.float32)
        features = VideoFeatures(
            video_id=item.video_id,
            rgb=rgb,
            audio=audio,
            labels=sorted(set(int(label) for label in item.labels)),
            mean_rgb=(state.rgb_sum / frames).astype(np.float32),
            mean_audio=mean_audio,
            extras=self._extras(state.audio_state),
        )
        return ExtractResult(item, features, None, frames, frames / self.fps, state.audio_state)

    # ------------------------------------------------------------------ main loop

    def extract(
        self,
        inputs: Iterable[VideoInput],
        progress: Callable[[ExtractProgress], None] | None = None,
    ) -> Iterator[ExtractResult]:
        """Yield one `ExtractResult` per input, in input order, as videos complete.

        Stopping the iteration early (or an exception from `progress`, e.g. KeyboardInterrupt)
        stops the decode threads.
        """
        started = time.perf_counter()
        jobs = iter(enumerate(inputs))
        lock = threading.Lock()
        stop = threading.Event()
        messages: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES * self.batch_size)
        threads = [
            threading.Thread(target=self._worker, args=(jobs, lock, messages, stop),
                             name=f"yt8m-decode-{n}", daemon=True)
            for n in range(self.workers)
        ]
        for thread in threads:
            thread.start()

        states: dict[int, _VideoState] = {}
        pending_rgb: dict[tuple[int, ...], list[tuple[int, int, np.ndarray]]] = {}
        pending_audio: list[tuple[int, int, np.ndarray]] = []
        counters = {"done": 0, "failed": 0, "frames": 0}
        next_slot = 0
        workers_left = len(threads)

        def report(result: ExtractResult | None = None) -> None:
            if progress is not None:
                progress(ExtractProgress(counters["done"], counters["failed"], counters["frames"], result))

        def run_rgb(shape: tuple[int, ...]) -> None:
            batch = pending_rgb.pop(shape)
            self._run("rgb", batch, states)
            counters["frames"] += len(batch)
            report()

        def run_audio() -> None:
            batch = list(pending_audio)
            pending_audio.clear()
            self._run("audio", batch, states)

        def flush_all() -> None:
            for shape in list(pending_rgb):
                run_rgb(shape)
            if pending_audio:
                run_audio()

        def ready() -> Iterator[ExtractResult]:
            nonlocal next_slot
            while next_slot in states and states[next_slot].complete():
                result = self._finish(states.pop(next_slot))
                next_slot += 1
                counters["done"] += 1
                counters["failed"] += 0 if result.ok else 1
                report(result)
                yield result

        try:
            while workers_left:
                waited = time.perf_counter()
                try:
                    message = messages.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    self.stats.waiting_seconds += time.perf_counter() - waited
                    if any(pending_rgb.values()) or pending_audio:
                        flush_all()  # decoders are slow right now: use the time
                        yield from ready()
                    if not any(thread.is_alive() for thread in threads) and messages.empty():
                        break
                    continue
                self.stats.waiting_seconds += time.perf_counter() - waited
                if isinstance(message, _Frame):
                    state = states[message.slot]
                    if state.error is not None:
                        continue
                    _grow(state.rgb, message.index)
                    state.missing += 1
                    shape = message.image.shape
                    pending_rgb.setdefault(shape, []).append((message.slot, message.index, message.image))
                    if message.log_mel is not None:
                        _grow(state.audio, message.index)
                        state.missing += 1
                        pending_audio.append((message.slot, message.index, message.log_mel))
                    if len(pending_rgb[shape]) >= self.batch_size:
                        run_rgb(shape)
                    elif sum(len(group) for group in pending_rgb.values()) >= PENDING_BATCHES * self.batch_size:
                        run_rgb(max(pending_rgb, key=lambda key: len(pending_rgb[key])))
                    if len(pending_audio) >= self.batch_size:
                        run_audio()
                elif isinstance(message, _Start):
                    states[message.slot] = _VideoState(item=message.item)
                elif isinstance(message, _End):
                    state = states[message.slot]
                    state.frames = message.frames
                    state.audio_state = message.audio
                elif isinstance(message, _Failed):
                    state = states[message.slot]
                    state.error = message.message
                elif isinstance(message, _WorkerDone):
                    workers_left -= 1
                elif isinstance(message, _Crashed):
                    raise message.error
                yield from ready()
            flush_all()
            yield from ready()
        finally:
            stop.set()
            while True:  # unblock threads waiting to put
                try:
                    messages.get_nowait()
                except queue.Empty:
                    break
            for thread in threads:
                thread.join(timeout=5.0)
            self.stats.wall_seconds += time.perf_counter() - started

    def extract_file(self, path: str | Path, video_id: str | None = None, labels: Iterable[int] = ()) -> VideoFeatures:
        """Features of one video; Yt8mError (naming the file) if it cannot be extracted."""
        path = Path(path)
        item = VideoInput(path, video_id or path.stem, tuple(labels))
        for result in self.extract([item]):
            if result.error is not None:
                raise Yt8mError(result.error)
            assert result.features is not None
            return result.features
        raise Yt8mError(f"{path}: nothing was extracted")  # pragma: no cover


def _audio_size(models: Any) -> int:
    pca = getattr(models, "audio_pca", None)
    if pca is not None:
        return int(pca.output_dim)
    from yt8m.core import AUDIO_SIZE

    return AUDIO_SIZE


# ----------------------------------------------------------------------------- inputs and labels

ID_FROM_STEM = "stem"
ID_FROM_PATH = "path"
ID_SOURCES = (ID_FROM_STEM, ID_FROM_PATH)
LABEL_MAP_SUFFIX = ".label_map.txt"
_GLOB_CHARS = "*?["
# Header names accepted in a labels CSV (case-insensitive).
KEY_COLUMNS = ("id", "video_id", "videoid", "path", "file", "filename", "video")
LABEL_COLUMNS = ("labels", "label", "classes", "class")
LABEL_SEPARATORS = (";", " ", "|")


@dataclass(frozen=True)
class FoundVideo:
    """A video file found from the command line and the folder it was found under (if any)."""

    path: Path
    root: Path | None  # the folder argument it came from; None for a file named directly


def collect_videos(inputs: Iterable[str | Path]) -> list[FoundVideo]:
    """Expand files, folders (recursively, files with video extensions) and glob patterns.

    Files named directly or matched by a glob are taken whatever their extension (a non-video
    then fails with its own error line). A path that does not exist, a folder without videos or a
    pattern matching nothing is a Yt8mError. Duplicates (the same file twice) are dropped.
    """
    import glob as glob_lib

    found: list[FoundVideo] = []
    seen: set[Path] = set()

    def add(path: Path, root: Path | None) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(FoundVideo(path, root))

    def add_folder(folder: Path) -> int:
        videos = sorted(
            p for p in folder.rglob("*")
            if p.is_file() and video_lib.is_video_file(p)
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        for path in videos:
            add(path, folder)
        return len(videos)

    for raw in inputs:
        text = str(raw)
        path = Path(text)
        if path.is_dir():
            if not add_folder(path):
                raise Yt8mError(f"{path}: folder contains no video files ({', '.join(sorted(video_lib.VIDEO_EXTENSIONS)[:6])} ...)")
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
    if not found:
        raise Yt8mError("no video files found in the inputs")
    return found


def video_id_for(found: FoundVideo, id_from: str = ID_FROM_STEM) -> str:
    """The record id: the file stem, or (`path`) its path relative to the folder it was found in."""
    if id_from == ID_FROM_STEM:
        return found.path.stem
    if id_from == ID_FROM_PATH:
        if found.root is not None:
            return found.path.relative_to(found.root).as_posix()
        return found.path.as_posix()
    raise Yt8mError(f"unknown id source {id_from!r}; choose {' or '.join(ID_SOURCES)}")


def check_unique_ids(items: Iterable[VideoInput]) -> None:
    """Two files with one id would collide in the records (and in --resume): refuse early."""
    first: dict[str, Path] = {}
    for item in items:
        if item.video_id in first:
            raise Yt8mError(
                f"{item.path}: id {item.video_id!r} is also the id of {first[item.video_id]}; "
                "rename one or use --id-from path"
            )
        first[item.video_id] = item.path


def read_label_map(path: str | Path) -> list[str]:
    """Class names in index order, one per line (a trailing empty line is ignored)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise Yt8mError(f"{path}: label map not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise Yt8mError(f"{path}: cannot read the label map ({error})") from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise Yt8mError(f"{path}: label map is empty (expected one class name per line)")
    duplicates = sorted({name for name in names if names.count(name) > 1 and name})
    if duplicates:
        raise Yt8mError(f"{path}: label map names {duplicates[:5]} more than once")
    return names


def write_label_map(path: str | Path, names: list[str]) -> Path:
    """Write class names one per line, in index order (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.inprogress")
    temporary.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    temporary.replace(path)
    return path


def label_map_path_for(output: str | Path) -> Path:
    """Where a built label map is saved: OUT.tfrecord -> OUT.label_map.txt."""
    return Path(output).with_suffix(LABEL_MAP_SUFFIX)


def folder_label_map(videos: Iterable[Path], existing: list[str] | None = None) -> list[str]:
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
                    f"{where}: label {token!r} is not a class index; give --label-map to use class names"
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
    import csv

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
