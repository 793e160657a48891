"""Child processes that die with their parent, and streaming a child's output into a log.

`die_with_parent(cmd)` wraps a command so that the kernel sends it a signal (SIGTERM by default)
when the process that started it dies, even by SIGKILL (Linux `PR_SET_PDEATHSIG`, set by a small
shim that then `exec`s the command; the setting survives `exec`). Without it, a training launched
by a killed flow run would keep running and race the rerun for its checkpoints, and a killed
`flip run` would leave its temporary Prefect server behind.

Run as a module, this file is the shim: `python -m tasks.child_process PARENT_PID SIGNAL CMD...`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
REPO_ROOT = Path(__file__).resolve().parent.parent


def die_with_parent(cmd: Sequence[str], sig: int = signal.SIGTERM) -> list[str]:
    """`cmd` behind the shim: it gets `sig` when the calling process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return list(cmd)
    return [sys.executable, "-m", "tasks.child_process", str(os.getpid()), str(int(sig)), *cmd]


def shim_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with the repository on PYTHONPATH, so the shim imports."""
    out = dict(os.environ if env is None else env)
    paths = [str(REPO_ROOT), *filter(None, out.get("PYTHONPATH", "").split(os.pathsep))]
    out["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return out


def stop(proc: subprocess.Popen[Any], grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; no-op when it already exited."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def stream(
    cmd: Sequence[str],
    log: Callable[[str], None],
    tail_lines: int = 40,
    **popen: Any,
) -> tuple[int, list[str]]:
    """Run `cmd` (behind `die_with_parent`), pass each output line (stdout + stderr) to `log`.

    Returns the exit code and the last `tail_lines` lines. If this call is interrupted (a task
    timeout, Ctrl-C), the child is stopped before the exception propagates.
    """
    tail: deque[str] = deque(maxlen=tail_lines)
    proc = subprocess.Popen(
        die_with_parent(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        bufsize=1,
        **popen,
    )
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if line:
                tail.append(line)
                log(line)
        return proc.wait(), list(tail)
    finally:
        stop(proc)


def _set_pdeathsig(sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def main(argv: Sequence[str]) -> None:
    """Shim: PARENT_PID SIGNAL CMD... -> set the death signal, check the parent, exec CMD."""
    if len(argv) < 3:
        raise SystemExit("usage: python -m tasks.child_process PARENT_PID SIGNAL CMD...")
    parent, sig, cmd = int(argv[0]), int(argv[1]), list(argv[2:])
    _set_pdeathsig(sig)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        raise SystemExit(f"parent {parent} is gone; not starting {cmd[0]}")
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
