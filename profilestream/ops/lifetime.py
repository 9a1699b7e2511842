"""Child processes that do not outlive the process that started them.

Why: a local cluster's processes (`run --processes N`) and the embedded brokers are children of
one process. If that process is killed (SIGKILL, the OOM killer), nothing would stop them: a
cluster would go on reading and writing next to the one a restart starts, with the same recovery
directory. Linux's `PR_SET_PDEATHSIG` has the kernel kill the child when its parent dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent(parent_pid: int) -> None:
    """For `subprocess.Popen(preexec_fn=...)`: runs in the forked child before exec, so only an
    already-resolved C call, no imports. The signal fires when the *thread* that forked the child
    exits: start children from a thread that lives as long as they should (the main thread)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, _SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


__all__ = ["die_with_parent"]
