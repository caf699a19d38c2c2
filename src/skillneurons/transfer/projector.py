"""Cross-model prompt projector (Su et al., NAACL 2022; REFERENCE.md section 6).

A prompt ``[P, d_s]`` trained on a source backbone is mapped to a prompt ``[P, d_t]`` of a target
backbone by::

    flatten (P * d_s) -> Linear(P * d_s, inner=768) -> Tanh -> Linear(inner, P * d_t)
                      -> reshape [P, d_t] -> LayerNorm(d_t)

The projector is trained with the frozen target backbone's task loss, through the target's head,
on a projector-training task whose source prompt is given (only the projector and any trainable
head parameters learn; the trainer is the ordinary :class:`~skillneurons.training.Trainer`, with
its resume, best checkpoint and history). It is then applied to source prompts of OTHER tasks.

Artifacts (``OUT/``): ``projector.safetensors`` + ``.json`` (kind ``projector``: source and target
backbone identities, shapes, the layout/template the projected prompts are used with, the head
it was trained through (``head``: its kind and config; a trainable linear head's tensors are saved
in the artifact as ``head.*``), the training task and source prompt), ``prompt.*`` (the projected
training prompt, a normal prompt artifact of the target model), ``split.json``, ``history.json``,
``checkpoint.*``, ``results.json``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skillneurons.artifacts import load_artifact, load_manifest, save_artifact
from skillneurons.backbones import Backbone, load_backbone
from skillneurons.data import Task, load_task
from skillneurons.distributed import is_main
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.prompts import Head, PromptModel, SoftPrompt, build_head, save_prompt
from skillneurons.prompts.io import check_backbone, read_prompt_tensors
from skillneurons.results import Result
from skillneurons.rundir import RunDir, make_splits, run_manifest
from skillneurons.training import TrainConfig, Trainer, evaluate, fit_and_test
from skillneurons.transfer.config import DEFAULT_INNER, ProjectApplyConfig, ProjectTrainConfig
from skillneurons.transfer.sources import prompt_identity, require_soft_prompt

__all__ = [
    "DEFAULT_INNER",
    "ProjectedPrompt",
    "ProjectedPromptResult",
    "ProjectorRun",
    "PromptProjector",
    "apply_projector",
    "load_projector",
    "save_projector",
    "train_projector",
]

#: fields of the result classes below that hold in-memory objects (never written to JSON)
_IN_MEMORY = ("model", "projector_module")


class _WithModel(Result):
    """A result that also carries the models it produced (``model``...: not JSON, not compared)."""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_json().items() if k not in _IN_MEMORY}

    def keys(self) -> list[str]:
        return [k for k in super().keys() if k not in _IN_MEMORY or getattr(self, k) is not None]


@dataclass
class ProjectorRun(_WithModel):
    """``OUT/results.json`` of :func:`train_projector`: the source and target models, the projector,
    the head, the split sizes and the fit-then-test metrics of the projected training prompt
    (``model``/``projector_module``: the trained prompt model and projector, in memory only)."""

    SCHEMA = "skillneurons.projector_run"

    source_backbone: dict[str, Any]
    target_backbone: dict[str, Any]
    layout: str
    template: str | None
    max_length: int
    source_prompt: str
    source_task: str | None
    task: str
    sizes: dict[str, int]
    projector: dict[str, int]
    head: str
    best_dev_accuracy: float | None
    best_step: int | None
    steps: int
    test_accuracy: float
    test_loss: float
    train_seconds: float
    test_seconds: float
    train_config: dict[str, Any]
    projector_path: str | None
    model: Any = field(default=None, compare=False, repr=False)
    projector_module: Any = field(default=None, compare=False, repr=False)


_RUN_FIELDS = {f.name for f in dataclasses.fields(ProjectorRun)}


@dataclass
class ProjectedPromptResult(_WithModel):
    """What :func:`apply_projector` returns: the projected prompt's artifact (when saved) and, when
    evaluated, its accuracy on a part of the source run's split (``model``: the projected prompt
    model, in memory only)."""

    SCHEMA = "skillneurons.projected_prompt"

    projector: str
    source_prompt: str
    task: str
    target_backbone: dict[str, Any]
    prompt_path: str | None = None
    split: str | None = None
    accuracy: float | None = None
    loss: float | None = None
    n: int | None = None
    model: Any = field(default=None, compare=False, repr=False)


class PromptProjector(nn.Module):
    """Map a ``[P, d_s]`` prompt (or a batch ``[B, P, d_s]``) to ``[P, d_t]`` (``[B, P, d_t]``).

    Args:
        length: prompt length P (the flattened input is ``P * source_hidden`` wide).
        source_hidden: d_s, the source backbone's input-embedding width.
        target_hidden: d_t, the target backbone's width.
        inner: the hidden width of the two-layer network (768 in the paper).
    """

    def __init__(
        self, length: int, source_hidden: int, target_hidden: int, inner: int = DEFAULT_INNER
    ) -> None:
        super().__init__()
        for name, v in (
            ("length", length),
            ("source_hidden", source_hidden),
            ("target_hidden", target_hidden),
            ("inner", inner),
        ):
            if int(v) < 1:
                raise ConfigError(f"projector {name} must be >= 1, got {v}")
        self.length, self.source_hidden, self.target_hidden, self.inner = (
            int(length),
            int(source_hidden),
            int(target_hidden),
            int(inner),
        )
        self.net = nn.Sequential(
            nn.Linear(self.length * self.source_hidden, self.inner),
            nn.Tanh(),
            nn.Linear(self.inner, self.length * self.target_hidden),
        )
        self.norm = nn.LayerNorm(self.target_hidden)

    def forward(self, prompt: torch.Tensor) -> torch.Tensor:
        batched = prompt.dim() == 3
        x = prompt if batched else prompt.unsqueeze(0)
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.length, self.source_hidden):
            raise ConfigError(
                f"this projector maps prompts of shape [{self.length}, {self.source_hidden}] but got "
                f"{list(prompt.shape)}: project prompts of the source model and length it was trained for"
            )
        y = self.net(x.flatten(1).to(self.norm.weight.dtype))
        y = self.norm(y.view(x.shape[0], self.length, self.target_hidden))
        return y if batched else y[0]

    def config(self) -> dict[str, int]:
        return {
            "length": self.length,
            "source_hidden": self.source_hidden,
            "target_hidden": self.target_hidden,
            "inner": self.inner,
        }


class ProjectedPrompt(SoftPrompt):
    """A soft prompt computed as ``projector(source)`` (the source prompt is a fixed buffer): what a
    :class:`PromptModel` trains when the projector is trained. ``weight`` is the current projection
    (detached), so :func:`save_prompt` writes it as a plain prompt of the target model."""

    source: torch.Tensor

    def __init__(self, projector: PromptProjector, source: torch.Tensor) -> None:
        nn.Module.__init__(self)  # no trainable vectors of its own (SoftPrompt.__init__ would add them)
        self.projector = projector
        self.register_buffer("source", source.detach().float().clone(), persistent=False)
        self.projector(self.source)  # checks the shape now, with a one-line error

    @property
    def length(self) -> int:
        return self.projector.length

    @property
    def hidden_size(self) -> int:
        return self.projector.target_hidden

    @property  # type: ignore[override]
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        with torch.no_grad():
            return self.projector(self.source).detach()

    def forward(self) -> torch.Tensor:
        return self.projector(self.source)


def save_projector(
    path: str | os.PathLike[str], projector: PromptProjector, *, head: Head | None = None, **manifest: Any
) -> Path:
    """Save a projector (kind ``projector``) with its shapes and ``manifest``; returns the tensor file.
    With ``head`` (the head it was trained through), its config is recorded under ``head`` and its
    trainable tensors (a linear head's) are saved as ``head.*``."""
    tensors = dict(projector.state_dict())
    if head is not None:
        tensors.update({f"head.{k}": v for k, v in head.state_dict().items()})
        manifest["head"] = {"kind": head.kind, "config": head.config()}
    return save_artifact(
        path, tensors, kind="projector", manifest={"projector": projector.config(), **manifest}
    )


def load_projector(path: str | os.PathLike[str]) -> tuple[PromptProjector, dict[str, Any]]:
    """``(projector, manifest)`` from a projector artifact (its head tensors, if any:
    :func:`projector_head_state`)."""
    tensors, man = load_artifact(path, kind="projector")
    try:
        proj = PromptProjector(**{k: int(v) for k, v in man["projector"].items()})
        proj.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("head.")})
    except (KeyError, RuntimeError) as e:
        raise ArtifactError(
            f"{path} is not a complete projector ({str(e).splitlines()[0]}): re-create it with "
            "`skillneurons project train`"
        ) from None
    return proj, man


def projector_head_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The trainable tensors of the head a projector was trained through (empty for fixed heads)."""
    tensors, _ = load_artifact(path, kind="projector")
    return {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}


def _source_prompt(path: str | os.PathLike[str]) -> tuple[torch.Tensor, dict[str, Any]]:
    require_soft_prompt(path)  # a delta-tuned artifact has no prompt: refused before loading it
    tensors, man = read_prompt_tensors(path)
    if "prompt" not in tensors:
        raise ArtifactError(f"{path} holds no 'prompt' tensor: pass a prompt artifact")
    return tensors["prompt"].float(), man


def _check_source(proj_man: dict[str, Any], prompt_man: dict[str, Any], path: Any) -> None:
    want, got = proj_man.get("source_backbone", {}), prompt_man.get("backbone", {})
    for key in ("hidden_size", "num_layers", "vocab_size", "model_type"):
        if key in want and key in got and want[key] != got[key]:
            raise ArtifactError(
                f"{path} was trained on {got.get('name')} ({key} {got[key]}) but the projector maps "
                f"prompts of {want.get('name')} ({key} {want[key]}): pass a prompt of {want.get('name')}"
            )


def train_projector(
    source_prompt: str | os.PathLike[str],
    target: str | Backbone,
    out_dir: str | os.PathLike[str] | None,
    options: ProjectTrainConfig | None = None,
    *,
    task: str | Task | None = None,
    config: TrainConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> ProjectorRun:
    """Train a projector from ``source_prompt``'s model to ``target`` on a task.

    ``options`` (:class:`~skillneurons.transfer.config.ProjectTrainConfig`: ``inner``, ``head``,
    ``layout``, ``template``, ``max_length``, ``max_examples``, ``split_seed``; ``overrides`` set its
    fields by name). ``task`` defaults to the source prompt's (built-in) task. The split is
    ``OUT/split.json`` when present (resume), else drawn from ``split_seed`` (default: the source
    prompt's split seed) over ``max_examples`` examples. ``config`` defaults to
    ``TrainConfig(lr=1e-3)`` (the projector is a dense network, not a prompt: the prompt default
    3e-2 diverges). The target's head is ``build_head(head, target, task.label_words)``. Returns the
    result (also in ``OUT/results.json``) with ``test_accuracy`` of the projected training prompt.
    """
    o = dataclasses.replace(options or ProjectTrainConfig(), **overrides)
    config = config or TrainConfig(lr=1e-3)
    src, src_man = _source_prompt(source_prompt)
    bb = load_backbone(target) if isinstance(target, str) else target
    run = RunDir.of(source_prompt)
    task_ref = task if task is not None else run.task_record.get("name")
    if task_ref is None:
        raise ConfigError(f"{source_prompt} does not name its task: pass the projector-training task")
    t = load_task(task_ref) if isinstance(task_ref, str) else task_ref
    out = Path(out_dir) if out_dir is not None else None
    seed = o.split_seed if o.split_seed is not None else int(run.split_record.get("seed", config.seed))
    splits = make_splits(t, seed, out, o.max_examples)
    torch.manual_seed(config.seed)
    proj = PromptProjector(src.shape[0], src.shape[1], bb.hidden_size, o.inner)
    h = build_head(o.head, bb, t.label_words)
    pm = PromptModel(
        bb, ProjectedPrompt(proj, src), h, layout=o.layout, max_length=o.max_length, template=o.template
    )
    train, dev, test = splits.part("train"), splits.part("dev"), splits.part("test")
    common = {
        "source_backbone": src_man.get("backbone", {}),
        "target_backbone": bb.identity(),
        "layout": pm.layout,
        "template": o.template,
        "max_length": o.max_length,
        "source_prompt": str(source_prompt),
        "source_task": run.task_record.get("name"),
    }
    manifest = {
        **run_manifest(t, splits),
        "projected_from": common,
        # the source prompt's content is part of the run (a checkpoint resumes only the same source)
        "source_prompt": {"path": str(source_prompt), "sha256": prompt_identity(source_prompt)},
    }

    def save_fn(path: Path, model: PromptModel, **man: Any) -> Path:
        save_projector(
            path.parent / "projector",
            proj,
            head=h,
            **common,
            task=man.get("task"),
            best_step=man.get("best_step"),
            dev_accuracy=man.get("dev_accuracy"),
        )
        return save_prompt(path, model, **man)

    trainer = _ProjectorTrainer(
        pm, train, dev, config, out, manifest=manifest, progress=progress, save_fn=save_fn
    )
    _, metrics = fit_and_test(trainer, test)
    results = ProjectorRun(
        **common,
        task=t.name,
        sizes={"train": len(train), "dev": len(dev), "test": len(test)},
        projector=proj.config(),
        head=h.kind,
        **{k: v for k, v in metrics.items() if k in _RUN_FIELDS},
        projector_path=str(out / "projector.safetensors") if out else None,
    )
    if out is not None and is_main():
        results.save(out / "results.json")
    results.model = pm
    results.projector_module = proj
    return results


class _ProjectorTrainer(Trainer):
    """A trainer whose best state lives in the projector artifact (not in ``prompt.weight``)."""

    def _load_trainable(self, tensors: dict[str, torch.Tensor]) -> None:
        assert self.out_dir is not None
        proj_tensors, _ = load_artifact(self.out_dir / "projector", kind="projector")
        state = {f"prompt.projector.{k}": v for k, v in proj_tensors.items() if not k.startswith("head.")}
        state.update({k: v for k, v in tensors.items() if k.startswith("head.")})
        self.model.load_state_dict(state)


def apply_projector(
    projector: str | os.PathLike[str],
    source_prompt: str | os.PathLike[str],
    target: str | Backbone | None = None,
    out: str | os.PathLike[str] | None = None,
    config: ProjectApplyConfig | None = None,
    *,
    task: str | Task | None = None,
    progress: bool = True,
    **options: Any,
) -> ProjectedPromptResult:
    """Project ``source_prompt`` (a prompt of the projector's source model, usually of another task
    than the projector was trained on) into the target model.

    ``config`` (:class:`~skillneurons.transfer.config.ProjectApplyConfig`: ``head``, ``split``,
    ``batch_size``, ``precision``; ``options`` override its fields by name). The projected prompt
    reads labels through ``build_head(head, target, task.label_words)`` with the layout/template the
    projector was trained with; ``head`` defaults to the kind of head the projector was trained
    through (a trained linear head is loaded from the projector artifact, and refused for a task
    with another number of classes); ``task`` defaults to the source prompt's task. When ``out`` is
    given it is saved there as a prompt artifact of the target model, with the source run's
    ``split.json`` copied beside it (so ``skillneurons evaluate`` uses the same test split). With
    ``split`` (default ``test``) the projected prompt is evaluated on that part of the source run's
    split.
    """
    c = dataclasses.replace(config or ProjectApplyConfig(), **options)
    proj, pman = load_projector(projector)
    src, sman = _source_prompt(source_prompt)
    _check_source(pman, sman, source_prompt)
    bb = target if isinstance(target, Backbone) else load_backbone(target or pman["target_backbone"]["name"])
    check_backbone(pman.get("target_backbone", {}), bb, what=f"projector {projector}")
    run = RunDir.of(source_prompt)
    task_ref = task if task is not None else run.task_record.get("name")
    if task_ref is None:
        raise ConfigError(f"{source_prompt} does not name its task: pass the task to evaluate on")
    t = load_task(task_ref) if isinstance(task_ref, str) else task_ref
    with torch.no_grad():
        weight = proj(src)
    h = _apply_head(projector, pman, c.head, bb, t)
    pm = PromptModel(
        bb,
        SoftPrompt(weight),
        h,
        layout=pman["layout"],
        max_length=int(pman.get("max_length", 128)),
        template=pman.get("template"),
    )
    res = ProjectedPromptResult(
        projector=str(projector), source_prompt=str(source_prompt), task=t.name, target_backbone=bb.identity()
    )
    if out is not None and is_main():
        res.prompt_path = _save_projected(pm, out, run, sman, t, projector, source_prompt)
    if c.split is not None:
        part = run.split_of(t).part(c.split)  # type: ignore[arg-type]
        metrics = evaluate(
            pm, part, c.batch_size, precision=c.precision, progress=progress, desc=f"projected {t.name}"
        )
        res.split, res.accuracy, res.loss = c.split, metrics["accuracy"], metrics["loss"]
        res.n = int(metrics["n"])
    res.model = pm
    return res


def _save_projected(
    pm: PromptModel,
    out: str | os.PathLike[str],
    run: RunDir,
    sman: dict[str, Any],
    t: Task,
    projector: str | os.PathLike[str],
    source_prompt: str | os.PathLike[str],
) -> str:
    """Save the projected prompt as a prompt artifact of the target model under ``out``, with the
    source run's ``split.json`` copied beside it when it is the same task; returns its path."""
    outp = Path(out)
    outp = outp if outp.suffix == ".safetensors" else outp / "prompt.safetensors"
    outp.parent.mkdir(parents=True, exist_ok=True)
    same_task = run.task_record.get("fingerprint") == t.fingerprint()
    src_split = run.split_file
    if same_task and src_split.is_file() and src_split.resolve() != (outp.parent / "split.json").resolve():
        shutil.copyfile(src_split, outp.parent / "split.json")
    man = {
        "task": {
            "name": t.name,
            "fingerprint": t.fingerprint(),
            "label_names": list(t.label_names),
            "source": t.source,
        },
        "split": sman.get("split", {}) if same_task else {},
        "projected_from": {
            "projector": str(projector),
            "source_prompt": str(source_prompt),
            "source_backbone": sman.get("backbone", {}),
        },
    }
    return str(save_prompt(outp.with_suffix(""), pm, **man))


def _apply_head(projector: Any, pman: dict[str, Any], head: str | None, bb: Backbone, t: Task) -> Head:
    trained = pman.get("head") or {}
    kind = head or str(trained.get("kind", "auto"))
    if kind != "linear":
        return build_head(kind, bb, t.label_words)
    if trained.get("kind") != "linear":
        raise ConfigError(
            f"projector {projector} was trained through a {trained.get('kind', 'fixed')} head, not a "
            "trained linear one: drop --head linear (an untrained linear head reads nothing)"
        )
    n = int(trained.get("config", {}).get("num_classes", -1))
    if n != t.num_classes:
        raise ConfigError(
            f"projector {projector} was trained through a linear head of {n} classes but task "
            f"'{t.name}' has {t.num_classes}: use --head label_words or similarity for this task"
        )
    h = build_head("linear", bb, t.label_words)
    h.load_state_dict(projector_head_state(projector))
    return h


def projector_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a projector artifact (no tensors)."""
    return load_manifest(path, "projector")
