"""Pieces of a resumable training loop shared by the trainers (``training.trainer`` for prompt models,
``reading.train`` for the DynSAN reader): Ctrl-C deferred to the end of a step, and an optimizer's
state as flat named tensors for a safetensors checkpoint."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Mapping

import torch

__all__ = ["load_optimizer_tensors", "optimizer_tensors", "sigint_deferred"]


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Ctrl-C inside the block is delivered (as ``KeyboardInterrupt``) when the block ends, so that the
    block's state changes happen entirely or not at all. A no-op outside the main thread or when SIGINT
    has a handler other than Python's default."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str = "opt.") -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as ``{prefix}{param id}.{name}`` tensors (scalars wrapped)."""
    out: dict[str, torch.Tensor] = {}
    for pid, st in optimizer.state_dict()["state"].items():
        for name, val in st.items():
            out[f"{prefix}{pid}.{name}"] = val if torch.is_tensor(val) else torch.tensor(val)
    return out


def load_optimizer_tensors(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], prefix: str = "opt."
) -> None:
    """Restore the state written by :func:`optimizer_tensors` (other keys of ``tensors`` are ignored)."""
    opt = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith(prefix):
            pid, name = k[len(prefix) :].split(".", 1)
            state.setdefault(int(pid), {})[name] = v
    opt["state"] = state
    optimizer.load_state_dict(opt)
