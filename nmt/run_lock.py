"""One training process per run folder: a second one (the same command started twice, a job
requeued while the first still runs) is refused instead of both writing last.pt."""

from __future__ import annotations

import logging
import os
from pathlib import Path

try:
    import fcntl
except ImportError:   # not POSIX: no lock
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


class FolderBusy(ValueError):
    """The run folder is being trained in by another process."""


def hold(run_dir: Path) -> int | None:
    """Lock the folder itself (no file of its own in it) for this process, until `release` or
    the end of the process, however it ends: a killed run leaves no stale lock. The lock is
    the machine's: processes on other machines sharing the folder (NFS) do not see it."""
    if fcntl is None:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderBusy(f"{run_dir} is being trained by another process that is still "
                         "running; wait for it to end, or stop it (it saves last.pt) and run "
                         "this again") from None
    except OSError as err:   # a file system without locks
        os.close(fd)
        log.warning("%s: cannot be locked (%s); nothing stops a second process training there",
                    run_dir, err.strerror or err)
        return None
    return fd


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
