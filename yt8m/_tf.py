"""Import TensorFlow without its start-up noise on the terminal, and without scikit-learn.

TF 2.21 logs through absl before its logging is initialised, so `TF_CPP_MIN_LOG_LEVEL` does
not silence the oneDNN / CUDA-stub lines; the only reliable way is to point file descriptor 2 at
/dev/null while the library loads and first probes for devices.

TensorFlow imports Keras, whose scikit-learn wrappers import scikit-learn when it is installed
(yt8m depends on it to fit PCAs): ~0.7-0.9 s of every command's start-up on 2 cores, for
wrappers yt8m never uses. While TensorFlow loads, `sklearn` is marked unavailable, so Keras
takes its own no-scikit-learn path (`keras.wrappers.SKLearn*` then say scikit-learn is missing
in this process); yt8m imports scikit-learn normally later, where a PCA is fitted.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager

_import_lock = threading.Lock()  # one thread imports TensorFlow; the others wait for the whole module

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextmanager
def _stderr_silenced():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. an embedding host): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextmanager
def _sklearn_unavailable():
    """`import sklearn` raises ImportError inside the block (unless it was imported before)."""
    blocked = "sklearn" not in sys.modules
    if blocked:
        sys.modules["sklearn"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if blocked and sys.modules.get("sklearn", 0) is None:
            del sys.modules["sklearn"]


def import_tensorflow_quietly():
    """Import TensorFlow (and probe its devices) with C++ start-up logging hidden; returns `tf`."""
    with _import_lock:
        if "tensorflow" in sys.modules:
            return sys.modules["tensorflow"]
        with _stderr_silenced(), _sklearn_unavailable():
            import tensorflow as tf

            tf.config.list_physical_devices()
            tf.get_logger().setLevel("ERROR")
        return tf
