"""Data parallelism on ``torch.distributed``: the same command runs single-process or under
``torchrun`` / ``accelerate launch`` (one process per GPU, or several CPU processes with gloo).

Conventions used across the package:

* work is split by **batch** (rank r takes batches r, r + W, r + 2W, ...), so every example is run in
  exactly the batch it has in a single process and the summed statistics are bit-identical;
* training splits each global batch between the ranks and all-reduces the gradients, so the update
  equals the single-process one up to float summation order;
* statistics are sums, reduced with ``all_reduce(SUM)``; only rank 0 writes files.

Launch, e.g. on one node with 4 GPUs: ``torchrun --nproc-per-node 4 -m skillneurons.cli find ...``;
on 2 nodes: ``torchrun --nnodes 2 --node-rank N --master-addr HOST --master-port 29500
--nproc-per-node 4 -m skillneurons.cli tune ...`` (see README).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def _group() -> Any:
    """``torch.distributed`` when a process group is initialised, else None. Nothing is imported: a
    process that has not imported torch has no process group (so ranks and the world size are known
    without loading torch, e.g. while a command checks its inputs)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def init_from_env(backend: str | None = None) -> bool:
    """Initialise the default process group when launched by torchrun (``WORLD_SIZE`` > 1).

    Returns True when running distributed. Backend: NCCL on CUDA, gloo otherwise. Each process uses
    the GPU ``LOCAL_RANK``.
    """
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    return True


def rank() -> int:
    dist = _group()
    return int(dist.get_rank()) if dist is not None else 0


def world_size() -> int:
    dist = _group()
    return int(dist.get_world_size()) if dist is not None else 1


def is_main() -> bool:
    """True on rank 0 (or without distribution): the process that writes files and prints."""
    return rank() == 0


def my_share(items: Sequence[T] | Iterable[T]) -> list[T]:
    """This rank's items: every ``world_size()``-th, starting at ``rank()``."""
    return list(items)[rank() :: world_size()]


def all_reduce_sum(*tensors: torch.Tensor) -> None:
    """Sum each tensor over the ranks, in place (no-op in a single process)."""
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def barrier() -> None:
    dist = _group()
    if dist is not None and dist.get_world_size() > 1:
        dist.barrier()
