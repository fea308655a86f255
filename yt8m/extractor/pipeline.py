"""Video files -> `VideoFeatures`: decoding threads feed batched networks, PCA and quantization.

Decode threads (`workers`) each take one video at a time and stream its sampled frames, together
with the matching log-mel audio example (example k starts at frame k's target time k / fps), into
a queue bounded by bytes (`QUEUE_BYTES`). Each sampled frame is resized to the network input in
the decode thread, with the network's own resize op (`Backbone.prepare`: for the 2015 graph its
`ResizeBilinear`), so a queued frame weighs the same (299 x 299 x 3 floats) whatever the video's
size and memory is bounded by the batch, not by the frame size. The calling thread runs the
networks: frames are batched ACROSS videos (`batch_size`), so short clips still fill batches, and
decoding the next frames overlaps with inference. Memory never grows with the length of a video
either: frames are dropped once the network has seen them, and a video keeps only its quantized
rows (1152 bytes per second).

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
`sampling` and `fps`. A video cut by `max_frames` is marked `capped` in its result. A file that fails (unreadable, not a video, truncated, no frames, broken
audio) becomes an `ExtractResult` with a one-line `error` naming it; the others go on. The
library prints nothing: pass a `progress` callback.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.core import AUDIO_SIZE, MAX_FRAMES, VideoFeatures, Yt8mError
from yt8m.extractor import audio as audio_lib
from yt8m.extractor import video as video_lib
from yt8m.extractor.backbones.network import networks_on_gpu
from yt8m.extractor.inputs import VideoInput, collect_videos  # noqa: F401 - VideoInput is part of this API
from yt8m.pca.quantization import NEUTRAL_BYTE, quantize

DEFAULT_BATCH_SIZE = 32  # frames per network batch on the CPU (larger batches gain nothing there)
DEFAULT_WORKERS = 2  # decode threads on the CPU: one decodes while the other waits on I/O
GPU_BATCH_SIZE = 128  # on a GPU: large batches keep it busy (~130 MB of 299x299 float inputs)
GPU_MAX_WORKERS = 8  # on a GPU the networks outrun one decoder: up to this many, one per core
# Decoded (and resized) frames waiting for the networks: at most QUEUE_BYTES of them (one message
# always fits), about 40 network inputs of 299 x 299 x 3 floats. With the batch being assembled
# and the one running, about 3 x batch_size network inputs are in memory at once.
QUEUE_BYTES = 48 * 1024 * 1024
PENDING_BATCHES = 2  # frames held across shape groups before the largest group is run anyway
POLL_SECONDS = 0.1  # how often a blocked decode thread checks whether it should stop
AUDIO_PRESENT = "present"
AUDIO_MISSING = "missing"
AUDIO_DISABLED = "disabled"


@dataclass
class ExtractResult:
    """The outcome for one input: features, or a one-line error naming the file."""

    input: VideoInput
    features: VideoFeatures | None = None
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0  # seconds of video covered by the sampled frames (frames / fps)
    audio: str = ""  # AUDIO_PRESENT / AUDIO_MISSING / AUDIO_DISABLED
    capped: bool = False  # max_frames cut the video: frames beyond it were not extracted
    warnings: list[str] = field(default_factory=list)  # decode problems that did not stop it (named)

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
    first_input_time: float | None = None  # time.time() when the first batch entered a network (start-up)


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
    capped: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Failed:
    slot: int
    message: str


@dataclass
class _Crashed:
    error: BaseException


class _WorkerDone:
    pass


def _message_bytes(message: Any) -> int:
    """What a message weighs in the queue (at least 1, so that the queue counts every message)."""
    if isinstance(message, _Frame):
        extra = message.log_mel.nbytes if message.log_mel is not None else 0
        return max(1, int(message.image.nbytes) + int(extra))
    return 1


class _ByteBoundedQueue(queue.Queue):
    """A `queue.Queue` whose `maxsize` is a number of bytes: `put` waits while it holds that many."""

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self._bytes = 0

    def _qsize(self) -> int:
        return self._bytes

    def _put(self, item: Any) -> None:
        super()._put(item)
        self._bytes += _message_bytes(item)

    def _get(self) -> Any:
        item = super()._get()
        self._bytes -= _message_bytes(item)
        return item


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
    capped: bool = False
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def complete(self) -> bool:
        return self.error is not None or (self.frames is not None and self.missing == 0)


def _grow(rows: list, index: int) -> None:
    if len(rows) <= index:
        rows.extend([None] * (index + 1 - len(rows)))


def check_options(fps: float, max_frames: int, batch_size: int | None, workers: int | None) -> None:
    """Yt8mError naming the first bad parameter, before any work (None: the device's default)."""
    if not (fps > 0 and math.isfinite(fps)):
        raise Yt8mError(f"fps must be a finite number > 0, got {fps}")
    if max_frames < 0:
        raise Yt8mError(f"max_frames must be >= 0 (0 = no limit), got {max_frames}")
    if batch_size is not None and batch_size < 1:
        raise Yt8mError(f"batch_size must be >= 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise Yt8mError(f"workers must be >= 1, got {workers}")


def sized_for_device(batch_size: int | None, workers: int | None) -> tuple[int, int]:
    """The batch size and decode threads to use: those given, else the defaults of the device the
    networks run on (CPU: DEFAULT_BATCH_SIZE, DEFAULT_WORKERS; GPU: GPU_BATCH_SIZE and one decode
    thread per core up to GPU_MAX_WORKERS). Features do not depend on either."""
    if batch_size is not None and workers is not None:
        return int(batch_size), int(workers)
    on_gpu = networks_on_gpu()
    if batch_size is None:
        batch_size = GPU_BATCH_SIZE if on_gpu else DEFAULT_BATCH_SIZE
    if workers is None:
        workers = max(DEFAULT_WORKERS, min(GPU_MAX_WORKERS, os.cpu_count() or 1)) if on_gpu else DEFAULT_WORKERS
    return int(batch_size), int(workers)


class FeatureExtractor:
    """Extract YT8M frame features from video files with the given `FeatureModels`.

    `fps` frames per second are sampled by `sampling` (`mediapipe` or `legacy`, see
    yt8m.extractor.video), at most `max_frames` per video (0 = all). `audio=False` (or models
    without VGGish) writes neutral audio rows. `batch_size` frames go through the networks at
    once; `workers` threads decode videos (None: sized for the device, see `sized_for_device`). `on_frame(item, index, image)`, when given, sees each
    sampled RGB frame that goes to the networks, in its decode thread (e.g. to keep thumbnails
    without decoding the video again).
    """

    def __init__(
        self,
        models: Any,
        fps: float = video_lib.DEFAULT_FPS,
        max_frames: int = MAX_FRAMES,
        sampling: str = video_lib.DEFAULT_SAMPLING,
        audio: bool = True,
        batch_size: int | None = None,
        workers: int | None = None,
        on_frame: Callable[[VideoInput, int, np.ndarray], None] | None = None,
    ) -> None:
        check_options(fps, max_frames, batch_size, workers)
        self.models = models
        self.fps = float(fps)
        self.max_frames = int(max_frames)
        self.sampling = video_lib.check_sampling(sampling)
        self.audio_enabled = bool(audio) and getattr(models, "vggish", None) is not None
        self.audio_pca = getattr(models, "audio_pca", None) if self.audio_enabled else None
        if self.audio_enabled and self.audio_pca is None:
            raise Yt8mError("audio features need an audio PCA (models.audio_pca is missing)")
        self.batch_size, self.workers = sized_for_device(batch_size, workers)
        self.stats = ExtractStats()
        self.on_frame = on_frame

    # ------------------------------------------------------------------ decode threads

    def _decode_video(self, slot: int, item: VideoInput, put: Callable[[Any], None]) -> None:
        """Stream one video's frames (+ audio examples) into the queue; errors become `_Failed`.

        One frame beyond `max_frames` is asked for: if it comes, the video is capped (and that
        frame is not used).
        """
        limit = self.max_frames + 1 if self.max_frames else 0
        warnings: list[str] = []  # damaged packets the decoders got past, one line each
        frames = video_lib.iter_frames(item.path, self.fps, self.sampling, limit, on_warning=warnings.append)
        examples: Iterator[np.ndarray] | None = None
        try:
            try:
                first = next(frames)
            except StopIteration:  # pragma: no cover - iter_frames raises instead
                raise Yt8mError(f"{item.path}: no video frames could be decoded") from None
            state = AUDIO_DISABLED
            if self.audio_enabled:
                known = item.has_audio
                has_audio = audio_lib.has_audio(item.path) if known is None else known
                state = AUDIO_PRESENT if has_audio else AUDIO_MISSING
            if state == AUDIO_PRESENT:
                examples = audio_lib.iter_audio_examples(
                    item.path, hop_seconds=1.0 / self.fps, on_warning=warnings.append
                )
            real_examples = 0
            count = 0
            capped = False
            for frame in itertools.chain([first], frames):
                if self.max_frames and count >= self.max_frames:
                    capped = True
                    break
                log_mel = None
                if examples is not None:
                    log_mel = next(examples, None)
                    if log_mel is None:  # the audio track is shorter than the video: silence
                        log_mel = audio_lib.silence_example()
                        examples = iter(())
                    else:
                        real_examples += 1
                if self.on_frame is not None:
                    self.on_frame(item, count, frame.image)
                put(_Frame(slot, count, self._prepare(frame.image), log_mel))
                count += 1
            if state == AUDIO_PRESENT and real_examples == 0:
                state = AUDIO_MISSING  # an audio stream without any decodable sound
            put(_End(slot, count, state, capped, warnings))
        except Yt8mError as error:
            put(_Failed(slot, str(error)))
        finally:
            frames.close()
            if examples is not None and hasattr(examples, "close"):
                examples.close()

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        """The frame as the rgb network takes it (resized by its own op), when the network says how."""
        prepare = getattr(self.models.inception, "prepare", None)
        return image if prepare is None else prepare(image)

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
        if self.stats.first_input_time is None:
            self.stats.first_input_time = time.time()
        started = time.perf_counter()
        run = getattr(network, "run_prepared", network)  # rows were `prepare`d in the decode threads
        embeddings = np.asarray(run(inputs), dtype=np.float32)
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
        return ExtractResult(
            item, features, None, frames, frames / self.fps, state.audio_state, state.capped, state.warnings
        )

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
        messages: queue.Queue = _ByteBoundedQueue(maxsize=QUEUE_BYTES)
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
                    state.capped = message.capped
                    state.warnings = message.warnings
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
    return int(pca.output_dim) if pca is not None else AUDIO_SIZE
