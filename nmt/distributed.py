"""Data-parallel training with torch.distributed (DistributedDataParallel), started by torchrun.

torchrun starts one process per GPU (or per CPU worker) on each node and tells each its RANK,
LOCAL_RANK and WORLD_SIZE. Every rank builds the same batches of an epoch and trains on its own
share (rank r takes batch k * world_size + r of step k); DDP all-reduces the gradients, so the
ranks stay identical. Rank 0 alone validates, logs and writes; the others take its outcome.

`Dist()` is the single process: every method is then a no-op or returns its input, so the
training loop has one code path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")
# Ways a run can stop at a step (or, "checkpoint", save last.pt on the timer); ranks take the
# largest any of them reached (see `agree`).
STOP_REASONS = ("", "checkpoint", "max_steps", "max_minutes", "interrupted")
# Rank 0 preprocesses a corpus and validates while the others wait: allow for that.
TIMEOUT = timedelta(hours=2)


class LossForward(nn.Module):
    """The model's loss as forward(): DDP synchronises gradients through forward() calls."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.loss(*args, **kwargs)


class Dist:
    """This process's place in the job; world_size 1 is a plain single-process run."""

    def __init__(self, rank: int = 0, local_rank: int = 0, world_size: int = 1,
                 objects: Any = None):
        self.rank, self.local_rank, self.world_size = rank, local_rank, world_size
        self.objects = objects  # process group for Python objects (gloo, also beside NCCL)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_device(self, device: torch.device) -> torch.device:
        """Each process of a node gets its own GPU."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, model: nn.Module) -> nn.Module:
        """What a training step calls for the loss: DDP over `model` when distributed."""
        step = LossForward(model)
        if not self.enabled:
            return step
        device = next(model.parameters()).device
        return DistributedDataParallel(step, device_ids=[device] if device.type == "cuda"
                                       else None)

    def sum_step(self, loss: torch.Tensor, n_tokens: int) -> tuple[float, int]:
        """(summed loss, target tokens) of the global batch: every rank's batch together."""
        if not self.enabled:
            return float(loss.detach()), n_tokens
        t = torch.stack([loss.detach().double(),
                         torch.tensor(float(n_tokens), dtype=torch.float64, device=loss.device)])
        tdist.all_reduce(t)
        total, tokens = t.tolist()
        return total, int(tokens)

    def agree(self, reason: str) -> str:
        """The stop reason of the rank that has the strongest one, so that all stop at the
        same step (time budgets and Ctrl-C are seen by each rank on its own)."""
        if not self.enabled:
            return reason
        device = "cuda" if tdist.get_backend() == "nccl" else "cpu"
        t = torch.tensor([STOP_REASONS.index(reason)], device=device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return STOP_REASONS[int(t.item())]

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0, group=self.objects)
        return box[0]

    def gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj, group=self.objects)
        return out

    def main_first(self, fn: Callable[[], T]) -> T:
        """`fn()` on rank 0, then on the others: rank 0 fills a cache that they then read."""
        if self.is_main:
            result = fn()
        if self.enabled:
            tdist.barrier(group=self.objects)
        if not self.is_main:
            result = fn()
        return result

    def close(self, finished: bool = True) -> None:
        """Leave the group. After a finished run every rank waits for the others first: a rank
        that tears its connections down while a peer still uses them can abort the peer at
        exit. After an error there is no waiting (the other ranks may never arrive)."""
        if self.enabled and tdist.is_initialized():
            if finished:
                tdist.barrier(group=self.objects)
            tdist.destroy_process_group()


def env_rank() -> int:
    """This process's rank as torchrun set it (0 when not started by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def env_world_size() -> int:
    """The number of processes of the job as torchrun set it (1 when not started by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: torch.device) -> Dist:
    """Join the process group that torchrun describes in the environment (NCCL when training on
    CUDA, gloo on the CPU); a single process when WORLD_SIZE is unset or 1."""
    world_size = env_world_size()
    if world_size <= 1:
        return Dist()
    rank, local_rank = env_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        # every rank checks the node's process count, so all of them stop, not only the extra
        local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1))
        if max(local_procs, local_rank + 1) > torch.cuda.device_count():
            raise ValueError(f"device={device}: {local_procs} processes on this node but "
                             f"{torch.cuda.device_count()} GPU(s); start at most one process "
                             "per GPU, or train on the CPU with device=cpu")
        torch.cuda.set_device(local_rank)
        tdist.init_process_group("nccl", timeout=TIMEOUT)
        objects = tdist.new_group(backend="gloo", timeout=TIMEOUT)
    else:
        tdist.init_process_group("gloo", timeout=TIMEOUT)
        objects = None  # the default group is gloo already
    return Dist(rank, local_rank, world_size, objects)


def rng_state(device: torch.device) -> list[torch.Tensor]:
    """This process's CPU random state, and its GPU's when it trains on one."""
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def set_rng_state(states: list[torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(states[0].cpu())
    if device.type == "cuda" and len(states) > 1:
        torch.cuda.set_rng_state(states[1].cpu(), device)
