"""Training and evaluation of the DynSAN reader.

Adam with a linear warm-up (then constant, the paper's schedule), gradient clipping, an exponential
moving average of the weights (evaluation and the saved reader use the averaged weights; the decay is
``min(ema, (1 + step) / (10 + step))`` so that short runs are not dominated by the initial weights), bf16
autocast on CUDA only, the best reader by dev EM.

Resuming: the data order of epoch ``e`` is a permutation drawn from ``(seed, e)``, and dropout and random
token selection of step ``t`` draw from generators seeded by ``(seed, t)``, so the random state of a step
is a function of the step and the checkpoint (weights, optimizer moments, EMA, step, history: one
safetensors + JSON artifact, written atomically at every evaluation and on Ctrl-C) is all a run needs to
continue exactly as an uninterrupted one would, after Ctrl-C or SIGKILL. ``time_budget`` is the one
exception: where it stops depends on the clock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from skillneurons.artifacts import load_artifact, save_artifact
from skillneurons.errors import ConfigError, DataError, NonFiniteError
from skillneurons.files import atomic_write_json
from skillneurons.reading import metrics
from skillneurons.reading.config import ReaderConfig, ReadTrainConfig
from skillneurons.reading.encode import EncodedExample, EncodedSplit, collate, span_text
from skillneurons.reading.network import Reader, ReaderOutput, span_log_likelihood
from skillneurons.training.state import load_optimizer_tensors, optimizer_tensors, sigint_deferred
from skillneurons.training.trainer import autocast_context

__all__ = [
    "ReadTrainState",
    "ReaderTrainer",
    "Scored",
    "decode_spans",
    "evaluate_reader",
    "load_reader",
    "reader_loss",
    "save_reader",
]

log = logging.getLogger(__name__)


@dataclass
class ReadTrainState:
    step: int = 0
    best: float = -1.0
    best_f1: float = 0.0
    best_step: int = -1
    train_loss: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Scored:
    """An evaluation: per-example EM / F1 (accuracy for the choice head), predictions, mean loss."""

    em: list[float]
    f1: list[float]
    predictions: list[str]
    loss: float


def reader_loss(out: ReaderOutput, batch: Any, beta: float) -> torch.Tensor:
    """Mean negative log-likelihood of the gold answer (all its occurrences) plus ``beta * ||G||_1``."""
    if out.start is not None:
        assert out.end is not None and batch.spans is not None
        nll = -span_log_likelihood(out.start, out.end, batch.spans)
    else:
        assert out.choice is not None and batch.label is not None
        nll = -out.choice.gather(1, batch.label[:, None]).squeeze(1)
    return nll.mean() + beta * out.l1


def _answerable_loss(out: ReaderOutput, batch: Any) -> float:
    """The summed loss of the examples that have an answer occurrence (an unanswerable one has none)."""
    if out.start is None:
        assert out.choice is not None and batch.label is not None
        keep = batch.label >= 0
        if not bool(keep.any()):
            return 0.0
        return float(-out.choice[keep].gather(1, batch.label[keep][:, None]).sum())
    assert out.end is not None and batch.spans is not None
    keep = (batch.spans[..., 0] >= 0).any(1)
    if not bool(keep.any()):
        return 0.0
    return float(-span_log_likelihood(out.start[keep], out.end[keep], batch.spans[keep]).sum())


def decode_spans(out: ReaderOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """The best span of every example: ``argmax p(s) p(e | s)`` over ``s <= e < s + W`` ([B] starts, ends)."""
    assert out.start is not None and out.end is not None
    b, t, w = out.end.shape
    flat = (out.start[:, :, None] + out.end).reshape(b, t * w).argmax(-1)
    start = flat // w
    return start, start + flat % w


def _batches(n: int, size: int, order: list[int] | None = None) -> Iterator[list[int]]:
    idx = order if order is not None else list(range(n))
    for i in range(0, n, size):
        yield idx[i : i + size]


def _generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63))


@torch.inference_mode()
def evaluate_reader(
    model: Reader,
    examples: list[EncodedExample],
    batch_size: int = 32,
    *,
    precision: str = "auto",
    seed: int = 0,
    on_batch: Callable[[Any, ReaderOutput, list[EncodedExample]], None] | None = None,
    progress: bool = False,
) -> Scored:
    """Score ``model`` on ``examples``; ``on_batch(batch, output, examples)`` sees every batch (gate
    statistics). Random selection draws from generators seeded by ``(seed, batch index)``."""
    if not examples:
        raise DataError("nothing to evaluate: the split has no readable examples")
    head = model.config.head
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    em: list[float] = []
    f1: list[float] = []
    preds: list[str] = []
    loss_sum = 0.0
    bar = tqdm(total=len(examples), desc="eval", disable=not progress, leave=False, unit="q")
    for bi, idx in enumerate(_batches(len(examples), batch_size)):
        exs = [examples[i] for i in idx]
        batch = collate(exs, head).to(device)
        with autocast_context(device, precision):
            out = model(batch, _generator(seed, bi))
        loss_sum += _answerable_loss(out, batch)
        if head == "span":
            starts, ends = decode_spans(out)
            lp = batch.passages.shape[2]
            texts = [span_text(e, int(s), int(t), lp) for e, s, t in zip(exs, starts, ends)]
            em += [metrics.exact_match(p, e.answers) for p, e in zip(texts, exs)]
            f1 += [metrics.f1(p, e.answers) for p, e in zip(texts, exs)]
        else:
            assert out.choice is not None
            picks = out.choice.argmax(-1).tolist()
            texts = [e.candidates[c] if c < len(e.candidates) else "" for e, c in zip(exs, picks)]
            gold = [e.candidates[e.label] if e.label >= 0 else "" for e in exs]  # -1: none can win
            acc = [a if e.label >= 0 else 0.0 for a, e in zip(metrics.accuracy(texts, gold), exs)]
            em += acc
            f1 += acc
        preds += texts
        if on_batch is not None:
            on_batch(batch, out, exs)
        bar.update(len(exs))
    bar.close()
    model.train(was_training)
    answerable = sum(1 for e in examples if e.answerable(head))
    loss = loss_sum / max(1, answerable)
    if not math.isfinite(loss):
        raise NonFiniteError(f"the evaluation loss is {loss}: the reader's weights hold NaN or inf")
    return Scored(em, f1, preds, loss)


def save_reader(path: str | Path, model: Reader, **manifest: Any) -> Path:
    """The reader's trained weights (not the frozen table) as a ``reader`` artifact."""
    man = {"reader": asdict(model.config), **manifest}
    return save_artifact(path, dict(model.state_dict()), kind="reader", manifest=man)


def load_reader(path: str | Path, embeddings: torch.Tensor | int) -> tuple[Reader, dict[str, Any]]:
    """Rebuild a reader saved by :func:`save_reader` over the frozen table of its embeddings (or, for
    an encoder reader, the width of its encoder's vectors)."""
    tensors, man = load_artifact(path, kind="reader")
    try:
        config = ReaderConfig(**man["reader"])
    except (KeyError, TypeError) as e:
        raise DataError(f"{path} has no valid reader settings ({e}): re-create it with `read train`") from e
    model = Reader(config, embeddings)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise DataError(f"{path} does not match its reader settings (missing {missing[:3]}): re-create it")
    for t in model.state_dict().values():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(f"{path} holds NaN or inf weights: re-train the reader")
    return model.eval(), man


class ReaderTrainer:
    """Trains a :class:`Reader` on encoded splits, keeping the best EMA weights by dev EM.

    ``out_dir`` (optional) receives ``checkpoint.*`` (resumable state), ``reader.*`` (the best reader)
    and ``history.json``; a checkpoint of the same run there is resumed. ``fit(stop_after=n)`` ends the
    run after step ``n`` without writing anything more, like a SIGKILL (the tests resume from it).
    """

    def __init__(
        self,
        model: Reader,
        train: EncodedSplit,
        dev: EncodedSplit,
        config: ReadTrainConfig | None = None,
        out_dir: str | Path | None = None,
        *,
        manifest: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        if not train.examples or not dev.examples:
            raise DataError(
                f"training needs readable train and dev examples ({len(train.examples)} / "
                f"{len(dev.examples)}; skipped: {train.skipped} / {dev.skipped})"
            )
        self.model, self.train, self.dev = model, train, dev
        self.vectors_key = vectors_key([train, dev], model.config)
        self.config = config or ReadTrainConfig()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.manifest = dict(manifest or {})
        self.progress = progress
        self.device = next(model.parameters()).device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        c = self.config
        self.optimizer = torch.optim.Adam(self.params, lr=c.lr, betas=c.betas, eps=1e-7)
        self.ema = [p.detach().clone().float() for p in self.params]
        self.steps_per_epoch = math.ceil(len(train.examples) / c.batch_size)

    def run_key(self) -> str:
        obj = {
            "train": {k: v for k, v in asdict(self.config).items() if k != "time_budget"},
            "reader": asdict(self.model.config),
            "data": [_fingerprint(self.train.examples), _fingerprint(self.dev.examples)],
            "table": list(self.model.table.shape),
        }
        if self.vectors_key is not None:  # encoder embeddings: the encoder, caps and truncation
            obj["vectors"] = self.vectors_key
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]

    # ---- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self, state: ReadTrainState) -> None:
        if self.out_dir is None:
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{n}": t for n, t in zip(self.names, self.ema)})
        tensors.update(optimizer_tensors(self.optimizer))
        man = {"run_key": self.run_key(), **asdict(state)}
        save_artifact(self.out_dir / "checkpoint", tensors, kind="read_checkpoint", manifest=man)

    def load_checkpoint(self) -> ReadTrainState | None:
        if self.out_dir is None or not (self.out_dir / "checkpoint.json").is_file():
            return None
        tensors, man = load_artifact(self.out_dir / "checkpoint", kind="read_checkpoint")
        if man.get("run_key") != self.run_key():
            raise ConfigError(
                f"{self.out_dir} holds a checkpoint of a different run (other data or settings): "
                "use another --out folder, or delete that checkpoint to start over"
            )
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        for i, n in enumerate(self.names):
            self.ema[i] = tensors[f"ema.{n}"].to(self.device)
        load_optimizer_tensors(self.optimizer, tensors)
        fields = {k: man[k] for k in asdict(ReadTrainState()) if k in man}
        return ReadTrainState(**fields)

    # ---- EMA weights ------------------------------------------------------------------------
    def swap_ema(self) -> None:
        """Exchange the live weights and the EMA weights (call twice to get back)."""
        with torch.no_grad():
            for i, p in enumerate(self.params):
                live = p.detach().clone()
                p.copy_(self.ema[i])
                self.ema[i] = live.float()

    def _update_ema(self, step: int) -> None:
        d = min(self.config.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(self.ema, self.params):
                e.mul_(d).add_(p.detach().float(), alpha=1 - d)

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> ReadTrainState:
        self.model.to(self.device)
        state = self.load_checkpoint() or ReadTrainState()
        resumed = state.step
        if resumed:
            print(f"resuming from step {resumed} of {self.config.steps}", file=sys.stderr)
        c = self.config
        began = time.perf_counter()
        self.stopped_by_time = False
        bar = tqdm(total=c.steps, initial=state.step, desc="read", disable=not self.progress, unit="step")
        try:
            while state.step < c.steps and (stop_after is None or state.step < stop_after):
                epoch, offset = divmod(state.step, self.steps_per_epoch)
                g = torch.Generator().manual_seed(c.seed * 100_003 + epoch)
                order = torch.randperm(len(self.train.examples), generator=g).tolist()
                for idx in list(_batches(len(order), c.batch_size, order))[offset:]:
                    with sigint_deferred():
                        loss = self.train_step(idx, state.step)
                        state.train_loss = loss if state.step == 0 else 0.9 * state.train_loss + 0.1 * loss
                        state.step += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{state.train_loss:.3f}", best=f"{max(state.best, 0):.3f}")
                    over = c.time_budget is not None and time.perf_counter() - began > 60 * c.time_budget
                    self.stopped_by_time = over
                    done = state.step >= c.steps or over
                    if state.step % c.eval_every == 0 or done:
                        self._evaluate(state)
                    if done or state.step == stop_after:  # stop_after: like a SIGKILL, no checkpoint
                        break
                if self.stopped_by_time:
                    break
        except KeyboardInterrupt:
            self.save_checkpoint(state)
            raise
        finally:
            bar.close()
        if self.out_dir is not None:
            atomic_write_json(self.out_dir / "history.json", state.history)
        self.resumed_from = resumed
        return state

    def _evaluate(self, state: ReadTrainState) -> None:
        c = self.config
        self.swap_ema()
        try:
            scored = evaluate_reader(
                self.model, self.dev.examples, c.eval_batch_size, precision=c.precision, seed=c.seed
            )
            em, f1 = sum(scored.em) / len(scored.em), sum(scored.f1) / len(scored.f1)
            with sigint_deferred():
                row = {"step": state.step, "train_loss": state.train_loss, "dev_em": em, "dev_f1": f1}
                state.history.append({**row, "dev_loss": scored.loss})
                if em > state.best:
                    state.best, state.best_f1, state.best_step = em, f1, state.step
                    if self.out_dir is not None:
                        save_reader(self.out_dir / "reader", self.model, **self._manifest(state))
        finally:
            self.swap_ema()
        with sigint_deferred():
            self.save_checkpoint(state)

    def _manifest(self, state: ReadTrainState) -> dict[str, Any]:
        return {
            **self.manifest,
            "train_config": asdict(self.config),
            "best_step": state.best_step,
            "dev_em": state.best,
            "dev_f1": state.best_f1,
        }

    def train_step(self, idx: list[int], step: int) -> float:
        c = self.config
        factor = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = c.lr * factor
        batch = collate([self.train.examples[i] for i in idx], self.model.config.head).to(self.device)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed((c.seed * 1_000_003 + step) % (2**63) + 1)  # dropout of this step
            with autocast_context(self.device, c.precision):
                out = self.model(batch, _generator(c.seed + 7_919, step))
                loss = reader_loss(out, batch, self.model.config.beta)
            loss.backward()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteError(f"the training loss became {value} at step {step + 1}: lower --lr")
        norm = torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip if c.grad_clip > 0 else math.inf)
        if not torch.isfinite(norm):
            raise NonFiniteError(f"the gradient norm became {float(norm)} at step {step + 1}: lower --lr")
        self.optimizer.step()
        self._update_ema(step)
        return value


def vectors_key(splits: list[EncodedSplit], config: ReaderConfig) -> str | None:
    """The one cache key of the splits' encoder vectors (None for a table reader, whose examples must
    carry none); a ConfigError when a split has no vectors or splits were encoded differently."""
    keys = {e.vectors.key if e.vectors is not None else None for s in splits for e in s.examples}
    if config.embeddings_kind == "table":
        if keys - {None}:
            raise ConfigError(
                "the examples carry encoder vectors but the reader embeds with the word-piece table: "
                "build it with --embeddings-kind encoder, or encode without the encoder"
            )
        return None
    if None in keys or len(keys) != 1:
        raise ConfigError(
            "an encoder reader needs every example encoded by one encoder with the same caps (cache keys "
            f"{sorted(map(str, keys))}): encode every split with encode_examples(..., encoder=...)"
        )
    return next(iter(keys))


def _fingerprint(examples: list[EncodedExample]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.id, e.question, e.passages, e.spans, e.mentions, e.label]).encode())
    return h.hexdigest()[:16]
