"""Training and evaluation of prompt models (and any model exposing ``encode``/``forward``).

Only the parameters with ``requires_grad`` train (the backbone is frozen with ``requires_grad_(False)``).
The data order of epoch ``e`` is a permutation drawn from ``(seed, e)``, the learning rate is a pure
function of the step, and the backbone runs in eval mode, so a run is reproducible from its seed and
a resumed run continues exactly where the interrupted one stopped: a checkpoint (trainable tensors,
optimizer moments, :class:`TrainState`) is written atomically at every evaluation and on Ctrl-C. Ctrl-C
during a training step takes effect once the step is recorded; during a dev evaluation it leaves that
evaluation pending, and the resumed run runs it first (same history, same best checkpoint). A loss or
gradient that is NaN or infinite stops training with a :class:`~skillneurons.errors.NonFiniteError`
naming the step; the last checkpoint (finite, from the last evaluation) is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from skillneurons.artifacts import load_artifact, save_artifact
from skillneurons.backbones.text import clip_chars
from skillneurons.data import Task
from skillneurons.distributed import all_reduce_sum, barrier, is_main, my_share, rank, world_size
from skillneurons.errors import ConfigError, NonFiniteError
from skillneurons.files import atomic_write_json
from skillneurons.prompts.io import save_prompt
from skillneurons.prompts.model import PromptModel
from skillneurons.training.config import TrainConfig
from skillneurons.training.state import load_optimizer_tensors, optimizer_tensors, sigint_deferred

__all__ = [
    "TrainConfig",
    "TrainHooks",
    "TrainResult",
    "TrainState",
    "Trainer",
    "autocast_context",
    "bucketed_order",
    "encode_examples",
    "evaluate",
    "example_lengths",
    "iterate_batches",
    "length_order",
    "lr_factor",
]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_dev_accuracy: float
    best_step: int
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    prompt_path: Path | None = None
    seconds: float = 0.0
    resumed_from: int = 0


@dataclass
class TrainState:
    """Where a run stands, besides its tensors: what a checkpoint records so that a resumed run goes on
    exactly like an uninterrupted one."""

    step: int = 0
    best: float = -1.0
    best_step: int = -1
    history: list[dict[str, float]] = field(default_factory=list)
    train_loss: float = 0.0  # the running (exponential moving average) train loss of the history rows
    eval_pending: bool = False  # the evaluation due after ``step`` steps is not recorded yet


def autocast_context(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA (when ``precision`` is auto or bf16), otherwise a no-op."""
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def iterate_batches(task: Task, batch_size: int, order: list[int] | None = None) -> Iterator[list[int]]:
    """Consecutive batches of ``batch_size`` indices of ``order`` (default: the task's order); the last
    may be shorter."""
    idx = order if order is not None else list(range(len(task)))
    for i in range(0, len(idx), batch_size):
        yield idx[i : i + batch_size]


def bucketed_order(
    permutation: list[int],
    lengths: Sequence[int],
    batch_size: int,
    bucket_batches: int,
    generator: torch.Generator,
) -> list[int]:
    """Length-bucketed batch order: each run of ``bucket_batches * batch_size`` indices of
    ``permutation`` is sorted by ``lengths`` (stable: equal lengths keep their random order) and cut into
    batches; the full batches are shuffled with ``generator`` and the one short batch (if any) goes last,
    so :func:`iterate_batches` of the result yields exactly these batches. Every index of
    ``permutation`` appears once."""
    chunk = batch_size * bucket_batches
    batches: list[list[int]] = []
    for s in range(0, len(permutation), chunk):
        part = sorted(permutation[s : s + chunk], key=lambda i: lengths[i])
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) < batch_size]
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    return [i for b in shuffled + short for i in b]


def example_lengths(model: Any, task: Task) -> list[int]:
    """Each example's token count as the model's tokenizer splits it (pairs as pairs, special tokens
    included, cut at the model's ``max_length``): the sort key of bucketed batching, computed once per
    trainer. The number of characters when the model has no tokenizer."""
    tok = getattr(getattr(model, "backbone", None), "tokenizer", None)
    limit = int(getattr(model, "max_length", 0) or 0)
    if tok is None or limit < 1:
        return [len(t) + len(task.texts_b[i] if task.texts_b else "") for i, t in enumerate(task.texts)]
    out: list[int] = []
    for s in range(0, len(task), 1024):  # the fast tokenizer in blocks: about 1 s per 10^5 sentences
        texts = clip_chars(task.texts[s : s + 1024], limit)
        pairs = clip_chars(task.texts_b[s : s + 1024], limit) if task.texts_b is not None else None
        enc = tok(texts, pairs, truncation=True, max_length=limit)
        out += [len(ids) for ids in enc["input_ids"]]
    return out


def length_order(model: Any, task: Task) -> list[int]:
    """The task's indices sorted by token length (:func:`example_lengths`; stable, so equal lengths keep
    the task's order): batches cut from it hold texts of similar length, so little of each batch is
    padding. For the passes whose result does not depend on the order of the examples (evaluation,
    find's sums and counts, which address each example by its index)."""
    lengths = example_lengths(model, task)
    return sorted(range(len(task)), key=lengths.__getitem__)


def encode_examples(model: PromptModel, task: Task, indices: list[int]) -> Any:
    texts = [task.texts[i] for i in indices]
    texts_b = [task.texts_b[i] for i in indices] if task.texts_b is not None else None
    return model.encode(texts, texts_b, [task.labels[i] for i in indices])


@torch.inference_mode()
def evaluate(
    model: PromptModel,
    task: Task,
    batch_size: int = 64,
    *,
    precision: str = "auto",
    progress: bool = False,
    desc: str = "eval",
    correct: torch.Tensor | None = None,
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``task``: ``{"accuracy", "loss", "n"}``.

    ``correct``, when given (a ``[len(task)]`` bool tensor), receives each example's correctness in
    the task's order (paired comparisons on the same examples: :mod:`skillneurons.evidence`)."""
    if len(task) == 0:
        raise ConfigError(f"cannot evaluate on an empty split of task '{task.name}'")
    _check_classes(model, task)
    if correct is not None and tuple(correct.shape) != (len(task),):
        raise ConfigError(f"correct has shape {tuple(correct.shape)}: pass a [{len(task)}] tensor")
    device = model.backbone.device
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # correct, loss sum, n
    hits = None if correct is None else torch.zeros(len(task), dtype=torch.float64, device=device)
    # batches of similar lengths (little padding); data parallel: whole batches per rank
    batches = my_share(iterate_batches(task, batch_size, length_order(model, task)))
    bar = tqdm(
        total=sum(map(len, batches)), desc=desc, disable=not progress or not is_main(), leave=False, unit="ex"
    )
    for idx in batches:
        batch = encode_examples(model, task, idx).to(device)
        with autocast_context(device, precision):
            logits = model(batch).float()
        assert batch.labels is not None
        hit = logits.argmax(-1) == batch.labels
        totals[0] += hit.sum()
        if hits is not None:
            hits[torch.as_tensor(idx, device=device)] = hit.double()
        totals[1] += F.cross_entropy(logits, batch.labels, reduction="sum").double()
        totals[2] += len(idx)
        bar.update(len(idx))
    bar.close()
    all_reduce_sum(totals, *([] if hits is None else [hits]))
    if correct is not None and hits is not None:
        correct.copy_(hits.cpu() > 0.5)
    n_correct, loss_sum, n = totals.tolist()
    if not math.isfinite(loss_sum):
        raise NonFiniteError(
            f"the evaluation loss on task '{task.name}' is {loss_sum}: the model's parameters or activations "
            "hold NaN or inf values; check the prompt (a diverged run?), or use --precision fp32"
        )
    return {"accuracy": n_correct / n, "loss": loss_sum / n, "n": int(n)}


def _check_classes(model: PromptModel, task: Task) -> None:
    if model.num_classes != task.num_classes:
        raise ConfigError(
            f"the head has {model.num_classes} classes but task '{task.name}' has {task.num_classes}: "
            "use a prompt trained for this label set"
        )


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


class TrainHooks:
    """Extension points of :class:`Trainer`; the defaults change nothing. Fast prompt tuning
    (:mod:`skillneurons.fpt`) uses them to run each step on a partial model.

    Every method is a pure function of the step (plus state set in :meth:`attach`), so a resumed
    run behaves exactly like an uninterrupted one.
    """

    def attach(self, trainer: Trainer) -> None:
        """Called once at the end of ``Trainer.__init__`` (``total_steps``, ``optimizer`` are set)."""

    def step_context(self, step: int) -> contextlib.AbstractContextManager[Any]:
        """Context in which training step ``step`` (0-based) runs."""
        return contextlib.nullcontext()

    def lr_factor(self, step: int, factor: float) -> float:
        """The learning-rate factor of training step ``step``; ``factor`` is the trainer's own (linear
        warm-up, then linear decay: :func:`lr_factor`)."""
        return factor

    def evaluate_at(self, step: int) -> bool:
        """Whether the dev evaluation due after ``step`` steps runs (the checkpoint is saved anyway)."""
        return True

    def history_fields(self, step: int) -> dict[str, float]:
        """Extra fields of the history row written after ``step`` steps."""
        return {}

    def identity(self) -> dict[str, Any]:
        """Settings that make a run different (part of the checkpoint's run key)."""
        return {}


class Trainer:
    """Trains the trainable parameters of a :class:`PromptModel` on a task, picking the best
    checkpoint by dev accuracy.

    Args:
        model: the model; parameters with ``requires_grad`` are trained.
        train, dev: the training split and the dev split used for model selection.
        config: optimisation settings.
        out_dir: where ``checkpoint.*``, ``prompt.*`` (best) and ``history.json`` go. When it
            already holds a checkpoint of the same run, training resumes from it.
        manifest: extra fields recorded in the saved prompt's manifest (task, split, ...). Its
            ``init_prompt`` / ``source_prompt`` entries (``{"sha256": ...}``: a transfer-initialised
            run's starting prompt, a projector's source prompt) are part of the run key.
        save_fn: how to save the best model (default: :func:`save_prompt`).
        hooks: extension points (:class:`TrainHooks`), e.g. progressive partial models.
    """

    def __init__(
        self,
        model: PromptModel,
        train: Task,
        dev: Task,
        config: TrainConfig | None = None,
        out_dir: str | Path | None = None,
        *,
        manifest: dict[str, Any] | None = None,
        progress: bool = True,
        save_fn: Callable[..., Path] | None = None,
        hooks: TrainHooks | None = None,
    ) -> None:
        self.model = model
        self.hooks = hooks
        self.train_task, self.dev_task = train, dev
        self.config = config or TrainConfig()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.manifest = dict(manifest or {})
        self.progress = progress
        self.save_fn = save_fn or save_prompt
        if len(train) == 0 or len(dev) == 0:
            raise ConfigError("training needs non-empty train and dev splits")
        _check_classes(model, train)
        train.require_classes("training")
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError("the model has no trainable parameters")
        c = self.config
        self.steps_per_epoch = math.ceil(len(train) / c.batch_size)
        self.total_steps = c.max_steps or max(1, round(c.epochs * self.steps_per_epoch))
        self.warmup = int(c.warmup_ratio * self.total_steps)
        self.eval_every = c.eval_every or max(1, self.steps_per_epoch // 2)
        # lr: the tuned part (the prompt, or a delta method's tensors: skillneurons.delta); head_lr: the head
        tuned = [m for m in (getattr(model, "prompt", None), getattr(model, "delta", None)) if m is not None]
        prompt_params = {id(p) for m in tuned for p in m.parameters()}
        groups = [{"params": [p for p in self.params if id(p) in prompt_params], "lr": c.lr, "base_lr": c.lr}]
        rest = [p for p in self.params if id(p) not in prompt_params]
        if rest:
            hl = c.head_lr or c.lr
            groups.append({"params": rest, "lr": hl, "base_lr": hl})
        groups = [g for g in groups if g["params"]]
        opt_cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(groups, betas=c.betas, weight_decay=c.weight_decay)
        if hooks is not None:
            hooks.attach(self)

    # ---- identity of a run (a checkpoint only resumes the same run) -----------------------
    def run_key(self) -> str:
        obj = {
            "config": asdict(self.config),
            "train": self.train_task.fingerprint(),
            "dev": self.dev_task.fingerprint(),
            "backbone": self.model.backbone.identity(),
            "shapes": {k: list(v.shape) for k, v in self.model.state_dict().items()},
        }
        if self.hooks is not None:
            obj["hooks"] = self.hooks.identity()
        for key in ("init_prompt", "source_prompt"):  # transfer: the starting / projected prompt's content
            ident = self.manifest.get(key)
            if isinstance(ident, dict) and ident.get("sha256"):
                obj[key] = ident["sha256"]
        delta = getattr(self.model, "delta", None)  # delta-tuned: the method and its options
        if delta is not None:
            obj["method"] = [delta.name, delta.options()]
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def permutation(self, epoch: int) -> list[int]:
        """The seeded random permutation of the training examples for ``epoch``."""
        return torch.randperm(len(self.train_task), generator=self._epoch_generator(epoch)).tolist()

    def epoch_order(self, epoch: int) -> list[int]:
        """The training order of ``epoch`` (a pure function of the seed and the epoch, so a resumed run
        repeats it): :meth:`permutation`, or with ``batching="bucketed"`` its length-bucketed batches
        (:func:`bucketed_order`, the batches shuffled by the same generator)."""
        g = self._epoch_generator(epoch)
        perm = torch.randperm(len(self.train_task), generator=g).tolist()
        c = self.config
        if c.batching == "random":
            return perm
        if self._lengths is None:
            self._lengths = example_lengths(self.model, self.train_task)
        return bucketed_order(perm, self._lengths, c.batch_size, c.bucket_batches, g)

    def _epoch_generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)

    _lengths: list[int] | None = None

    # ---- checkpoints -----------------------------------------------------------------------
    def _ckpt(self) -> Path | None:
        return self.out_dir / "checkpoint" if self.out_dir else None

    #: the step of the checkpoint last written or read (None: none yet), named when training diverges
    _checkpoint_step: int | None = None

    def save_checkpoint(self, state: TrainState) -> None:
        path = self._ckpt()
        if path is None or not is_main():
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update(optimizer_tensors(self.optimizer))
        save_artifact(
            path,
            tensors,
            kind="checkpoint",
            manifest={
                "run_key": self.run_key(),
                "step": state.step,
                "best_dev_accuracy": state.best,
                "best_step": state.best_step,
                "history": state.history,
                "train_loss": state.train_loss,
                "eval_pending": state.eval_pending,
                "total_steps": self.total_steps,
            },
        )
        self._checkpoint_step = state.step

    def load_checkpoint(self) -> TrainState | None:
        path = self._ckpt()
        if path is None or not path.with_suffix(".json").is_file():
            return None
        tensors, man = load_artifact(path, kind="checkpoint")
        if man.get("run_key") != self.run_key():
            raise ConfigError(
                f"{self.out_dir} holds a checkpoint of a different run (other data, model or settings): "
                "use another --out folder, or delete that checkpoint to start over"
            )
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        load_optimizer_tensors(self.optimizer, tensors)
        self._checkpoint_step = int(man["step"])
        return TrainState(
            step=int(man["step"]),
            best=float(man["best_dev_accuracy"]),
            best_step=int(man["best_step"]),
            history=list(man["history"]),
            train_loss=float(man.get("train_loss", 0.0)),
            eval_pending=bool(man.get("eval_pending", False)),
        )

    # ---- the loop --------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        self.model.to(self.model.backbone.device)
        start = time.perf_counter()
        loaded = self.load_checkpoint()
        state = loaded or TrainState()
        resumed_from = state.step
        if loaded is not None and is_main():
            print(f"resuming from step {state.step} of {self.total_steps} ({self._ckpt()})", file=sys.stderr)
        bar = tqdm(
            total=self.total_steps, initial=state.step, desc="tune", disable=not self.progress, unit="step"
        )
        try:
            self._loop(state, self.hooks or TrainHooks(), bar)
        except KeyboardInterrupt:
            self.save_checkpoint(state)
            raise
        finally:
            bar.close()
        if self.out_dir and is_main():
            atomic_write_json(self.out_dir / "history.json", state.history)
        barrier()
        prompt_path = self.out_dir / "prompt.safetensors" if self.out_dir else None
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        elif prompt_path is not None and prompt_path.is_file():
            tensors, _ = load_artifact(prompt_path, kind="prompt")
            self._load_trainable(tensors)
        return TrainResult(
            state.best,
            state.best_step,
            state.step,
            state.history,
            prompt_path,
            time.perf_counter() - start,
            resumed_from,
        )

    def _loop(self, state: TrainState, hooks: TrainHooks, bar: Any) -> None:
        """Train from ``state`` to the last step (or early stopping), evaluating and checkpointing."""
        c = self.config
        if state.eval_pending:  # interrupted during the evaluation after state.step steps: it runs first
            self._evaluate(state, hooks)
        while state.step < self.total_steps:
            epoch, offset = divmod(state.step, self.steps_per_epoch)
            batches = list(iterate_batches(self.train_task, c.batch_size, self.epoch_order(epoch)))[offset:]
            for idx in batches:
                with sigint_deferred():  # a step and its record happen entirely or not at all
                    step = state.step
                    with hooks.step_context(step):
                        loss = self.train_step(idx, step)
                    ema = state.train_loss
                    state.train_loss = loss if step == 0 or not ema else 0.9 * ema + 0.1 * loss
                    state.step += 1
                    state.eval_pending = state.step % self.eval_every == 0 or state.step == self.total_steps
                bar.update(1)
                best = f"{state.best:.4f}" if state.best_step >= 0 else "-"  # '-': no evaluation yet
                bar.set_postfix(loss=f"{state.train_loss:.4f}", best=best)
                if state.eval_pending:
                    self._evaluate(state, hooks)
                if state.step >= self.total_steps:
                    break

    def _evaluate(self, state: TrainState, hooks: TrainHooks) -> None:
        """The dev evaluation due after ``state.step`` steps, its history row, the best prompt and the
        checkpoint. Ctrl-C during the evaluation leaves it pending: the resumed run runs it again."""
        c = self.config
        metrics = None
        if hooks.evaluate_at(state.step):
            metrics = evaluate(self.model, self.dev_task, c.eval_batch_size, precision=c.precision)
        with sigint_deferred():
            if metrics is not None:
                state.history.append(
                    {
                        "step": state.step,
                        "train_loss": state.train_loss,
                        "dev_accuracy": metrics["accuracy"],
                        "dev_loss": metrics["loss"],
                        **hooks.history_fields(state.step),
                    }
                )
                if metrics["accuracy"] > state.best:
                    state.best, state.best_step = metrics["accuracy"], state.step
                    self._save_best(state.best, state.step)
            state.eval_pending = False
            self.save_checkpoint(state)
            waited = len(state.history) - 1 - _index_of_step(state.history, state.best_step)
            if metrics is not None and c.patience is not None and waited >= c.patience:
                log.info(
                    "early stopping at step %d (best %.4f at %d)", state.step, state.best, state.best_step
                )
                state.step = self.total_steps

    _best_state: dict[str, torch.Tensor] | None = None

    def _load_trainable(self, tensors: dict[str, torch.Tensor]) -> None:
        sd = {("prompt.weight" if k == "prompt" else k): v for k, v in tensors.items()}
        self.model.load_state_dict(sd)

    def _save_best(self, best: float, step: int) -> None:
        self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.out_dir and is_main():
            self.save_fn(
                self.out_dir / "prompt",
                self.model,
                **{
                    **self.manifest,
                    "seed": self.config.seed,
                    "train_config": asdict(self.config),
                    "best_step": step,
                    "dev_accuracy": best,
                },
            )

    def train_step(self, idx: list[int], step: int) -> float:
        c = self.config
        device = self.model.backbone.device
        f = lr_factor(step, self.total_steps, self.warmup)
        if self.hooks is not None:
            f = self.hooks.lr_factor(step, f)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * f
        self.optimizer.zero_grad(set_to_none=True)
        # data parallel: each rank takes its share of the global batch; the loss is the global mean
        local = idx[rank() :: world_size()]
        total = torch.zeros(1, dtype=torch.float64, device=device)
        if local:
            batch = encode_examples(self.model, self.train_task, local).to(device)
            with autocast_context(device, c.precision):
                logits = self.model(batch).float()
            assert batch.labels is not None
            loss = F.cross_entropy(logits, batch.labels, reduction="sum") / len(idx)
            loss.backward()
            total += loss.detach().double()
        if world_size() > 1:
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            all_reduce_sum(total, *(p.grad for p in self.params if p.grad is not None))
        if not torch.isfinite(total).all():
            raise self._diverged("loss", total.item(), step)
        # the global gradient norm (clipped when --grad-clip is set: inf leaves the gradients as they are)
        norm = torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip if c.grad_clip > 0 else math.inf)
        if not torch.isfinite(norm):
            raise self._diverged("gradient norm", norm.item(), step)
        self.optimizer.step()
        return float(total.item())

    def _diverged(self, what: str, value: float, step: int) -> NonFiniteError:
        """The error for a non-finite ``what`` in the training step of index ``step`` (the parameters are
        not updated by it, and the checkpoint on disk is the last finite state)."""
        kept = self._checkpoint_step
        where = f" (the checkpoint of step {kept} is kept)" if kept is not None else ""
        return NonFiniteError(
            f"the training {what} became {value} at step {step + 1}{where}: "
            f"lower --lr (now {self.config.lr}) or use --precision fp32"
        )


def _index_of_step(history: list[dict[str, float]], step: int) -> int:
    for i, h in enumerate(history):
        if h["step"] == step:
            return i
    return len(history) - 1
