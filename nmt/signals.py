"""Stop requests by signal, so that training ends its step, saves last.pt and exits cleanly.

SIGINT (Ctrl-C) and SIGTERM (what `kill`, Slurm and Kubernetes send before killing) ask for a
stop; a second Ctrl-C aborts at once. SIGUSR2 is Slurm's warning before a time limit or a
preemption when the job was started by submitit (Hydra's Slurm launcher): it is taken only where
submitit listens for it, and after the checkpoint submitit's own handler gets it and requeues
the job, which then resumes from last.pt.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

# Runs this process stopped on a signal. Kept here and read as `signals.STOPPED_RUNS`: a
# joblib worker runs job after job, and gets the job function pickled by value (with copies
# of the globals it names) when nmt-train runs as `python -m`; modules travel by reference.
STOPPED_RUNS: list[str] = []


class StopSignals:
    """A context manager: while inside, `requested` tells whether a stop signal came."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def __enter__(self) -> StopSignals:
        wanted = [signal.SIGINT, signal.SIGTERM]
        usr2 = getattr(signal, "SIGUSR2", None)
        if usr2 is not None and callable(signal.getsignal(usr2)):  # a handler of submitit's
            wanted.append(usr2)
        for sig in wanted:
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None:
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            again = " (Ctrl-C again to abort)" if signum == signal.SIGINT else ""
            log.warning("%s: finishing this step and saving a checkpoint%s", name, again)
            self.received = signum

    def hand_over(self) -> None:
        """Once the checkpoint is saved: pass SIGUSR2 on to the handler that was there before
        (submitit's, which requeues the job and exits)."""
        usr2 = getattr(signal, "SIGUSR2", None)
        handler = self.previous.get(usr2) if usr2 is not None else None
        if self.received == usr2 and callable(handler):
            self.__exit__()
            handler(usr2, None)
