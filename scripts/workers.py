"""Worker processes for the long-running scripts (sim_many, fuzz_vm): they die with the script.

A ProcessPoolExecutor's workers outlive a parent killed by a signal and keep a core busy until their
task ends; on Linux each worker asks the kernel to send it SIGTERM when its parent dies."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """ProcessPoolExecutor initializer: end this worker when the process that started it ends."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:   # the parent died before the call above took effect
            os._exit(1)
