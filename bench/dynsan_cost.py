"""Cost of DynSA vs full self-attention as the length L grows (issue #19 item 4).

For every L: analytic forward FLOPs (../shared/REFERENCE.md section 9: full ``6 L D^2 + 4 L^2 D`` per
layer, DynSA ``6 L D^2 + 6 K D^2 + 4 K^2 D``; plus this block's convolutions, gate and output maps,
the same for both), FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` for one training
step (forward + backward), measured seconds per training step (median and minimum of ``--repeats``,
after the two untimed steps that count FLOPs and bytes), and memory:
on CUDA the peak allocated bytes of the step; everywhere the bytes of the tensors autograd saves for
the backward pass (all of them, and the attention weights among them: the saved square
``[.., n, n]`` tensors), measured with ``torch.autograd.graph.saved_tensors_hooks``.

Two levels: ``block`` (one DynSA block over [B, L, D], the layer of the formulas) and ``network``
(the whole reader, passages of ``--passage-len`` tokens, L / passage-len passages, a frozen random
table standing in for the word pieces: the cost does not depend on its values).

    flock /work/heavy.lock env OMP_NUM_THREADS=2 PYTHONPATH=src python bench/dynsan_cost.py
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from common import cpu_model, write_json
from skillneurons.reading.config import ReaderConfig
from skillneurons.reading.dynsa import DynSA
from skillneurons.reading.network import ReadBatch, Reader, span_log_likelihood

ROOT = Path(__file__).resolve().parent.parent


def analytic(length: int, dim: int, heads: int, k: int | None, kernel: int = 7) -> dict[str, float]:
    """Forward FLOPs of one block: the reference's attention terms and this block's full count."""
    shared = 2 * (2 * length * dim * kernel + 2 * length * dim * dim)  # two separable convolutions
    shared += 6 * length * dim * dim + 2 * length * dim * heads  # F_U, F_h, F_Y; F_G
    if k is None:
        attn = 6 * length * dim**2 + 4 * length**2 * dim
        ref = attn
    else:
        kk = min(k, length)
        attn = 6 * kk * dim**2 + 4 * kk**2 * dim
        ref = 6 * length * dim**2 + 6 * kk * dim**2 + 4 * kk**2 * dim
    return {"reference": float(ref), "block_forward": float(shared + attn)}


class SavedBytes:
    """Bytes of the tensors autograd saves for backward (deduplicated by storage), and of the square
    ``[.., n, n]`` ones (attention weights)."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[int, bool]] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        square = t.dim() >= 3 and t.shape[-1] == t.shape[-2] and t.shape[-1] > 1
        size = t.untyped_storage().nbytes()
        old = self.seen.get(key)
        if old is None or old[0] < size:
            self.seen[key] = (size, square or (old[1] if old else False))
        return t

    @property
    def total(self) -> int:
        return sum(s for s, _ in self.seen.values())

    @property
    def attention(self) -> int:
        return sum(s for s, sq in self.seen.values() if sq)


def _block_step(args: argparse.Namespace, length: int, k: int | None) -> tuple[Any, Any]:
    torch.manual_seed(0)
    sel = "full" if k is None else "gate"
    blk = DynSA(args.dim, args.heads, k or length, selection=sel, dropout=0.0).to(args.device)
    x = torch.randn(args.batch, length, args.dim, device=args.device)
    mask = torch.ones(args.batch, length, dtype=torch.bool, device=args.device)

    def step() -> None:
        y, l1 = blk(x, mask)
        (y.square().mean() + 1e-5 * l1).backward()

    return blk, step


def _network_step(args: argparse.Namespace, length: int, k: int | None) -> tuple[Any, Any]:
    torch.manual_seed(0)
    lp = min(args.passage_len, length)
    p = max(1, length // lp)
    sel = "full" if k is None else "gate"
    c = ReaderConfig(
        dim=args.dim,
        heads=args.heads,
        top_k=k or 1,
        blocks=args.blocks,
        passages=p,
        selection=sel,
        dropout=0.0,
    )
    model = Reader(c, torch.randn(1000, 384)).to(args.device)
    g = torch.Generator().manual_seed(1)
    batch = ReadBatch(
        torch.randint(0, 1000, (args.batch, 20), generator=g),
        torch.ones(args.batch, 20, dtype=torch.bool),
        torch.randint(0, 1000, (args.batch, p, lp), generator=g),
        torch.ones(args.batch, p, lp, dtype=torch.bool),
        spans=torch.tensor([[[5, 7]]] * args.batch),
    ).to(args.device)

    def step() -> None:
        out = model(batch)
        assert out.start is not None and out.end is not None
        (-span_log_likelihood(out.start, out.end, batch.spans).mean() + 1e-5 * out.l1).backward()

    return model, step


def measure(args: argparse.Namespace, level: str, length: int, k: int | None) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    module, step = (_block_step if level == "block" else _network_step)(args, length, k)
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    saved = SavedBytes()
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
        step()
    peak = torch.cuda.max_memory_allocated() if cuda else None
    times = []
    for _ in range(args.repeats):
        module.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    row: dict[str, Any] = {
        "level": level,
        "L": length,
        "K": k,
        "counted_flops_step": int(counter.get_total_flops()),
        "seconds_step": statistics.median(times),
        "seconds_step_min": min(times),
        "seconds_all": times,
        "saved_bytes": saved.total,
        "attention_saved_bytes": saved.attention,
        "peak_bytes": peak,
    }
    if level == "block":
        a = analytic(length, args.dim, args.heads, k)
        row.update(analytic_reference_flops=a["reference"], analytic_block_forward_flops=a["block_forward"])
    return row


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    full = {(r["level"], r["L"]): r for r in rows if r["K"] is None}
    out = []
    for r in rows:
        f = full.get((r["level"], r["L"]))
        if r["K"] is None or f is None:
            continue
        ratio = {
            "level": r["level"],
            "L": r["L"],
            "K": r["K"],
            "speedup": f["seconds_step"] / r["seconds_step"],
            "speedup_min": f["seconds_step_min"] / r["seconds_step_min"],
            "counted_flops_ratio": f["counted_flops_step"] / r["counted_flops_step"],
            "saved_bytes_ratio": r["saved_bytes"] / f["saved_bytes"],
            "attention_bytes_ratio": (
                r["attention_saved_bytes"] / f["attention_saved_bytes"]
                if f["attention_saved_bytes"]
                else None
            ),
        }
        if r["peak_bytes"] is not None:
            ratio["peak_bytes_ratio"] = r["peak_bytes"] / f["peak_bytes"]
        out.append(ratio)
    return out


def break_even(ratios: list[dict[str, Any]], level: str, k: int) -> float | None:
    """The L at which DynSA's measured step time equals full attention's (linear interpolation of the
    speed-up between grid points; None when it never crosses 1 on the grid)."""
    pts = sorted((r["L"], r["speedup"]) for r in ratios if r["level"] == level and r["K"] == k)
    for (l0, s0), (l1, s1) in itertools.pairwise(pts):
        if s0 < 1 <= s1:
            return l0 + (1 - s0) * (l1 - l0) / (s1 - s0)
    if pts and pts[0][1] >= 1:
        return float(pts[0][0])  # already faster at the shortest length measured
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 300, 600, 1200, 2400, 5000])
    ap.add_argument("--ks", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--passage-len", type=int, default=100)
    ap.add_argument(
        "--network-max-length", type=int, default=2400, help="longest L of the network level (memory)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--levels", nargs="+", default=["block", "network"], choices=["block", "network"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=str(ROOT / "bench/results/dynsan_cost.json"))
    args = ap.parse_args()
    rows = []
    for level in args.levels:
        for length in args.lengths:
            if level == "network" and length > args.network_max_length:
                continue
            for k in [None, *args.ks]:
                row = measure(args, level, length, k)
                rows.append(row)
                print(
                    f"{level} L={length} K={k}: {row['seconds_step']:.4f} s, "
                    f"{row['counted_flops_step'] / 1e9:.3f} GFLOP, "
                    f"attn {row['attention_saved_bytes'] / 2**20:.1f} MiB",
                    file=sys.stderr,
                )
    ratios = _ratios(rows)
    result = {
        "setting": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "rows": rows,
        "ratios": ratios,
        "break_even_L": {f"{lv}_K{k}": break_even(ratios, lv, k) for lv in args.levels for k in args.ks},
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
