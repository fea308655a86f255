"""Import TensorFlow without its start-up noise on the terminal.

TF 2.21 logs through absl before its logging is initialised, so `TF_CPP_MIN_LOG_LEVEL` does
not silence the oneDNN / CUDA-stub lines; the only reliable way is to point file descriptor 2 at
/dev/null while the library loads and first probes for devices.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

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


def import_tensorflow_quietly():
    """Import TensorFlow (and probe its devices) with C++ start-up logging hidden; returns `tf`."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()
        tf.get_logger().setLevel("ERROR")
    return tf
