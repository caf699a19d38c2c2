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
in the artifact as ``head.*``), the training task and source prompt), ``prompt.*`` (the projected training prompt, a normal prompt artifact of
the target model), ``split.json``, ``history.json``, ``checkpoint.*``, ``results.json``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skillneurons.artifacts import atomic_write_json, load_artifact, load_manifest, save_artifact
from skillneurons.backbones import Backbone, load_backbone
from skillneurons.data import Task, load_task
from skillneurons.distributed import is_main
from skillneurons.errors import ArtifactError, ConfigError
from skillneurons.neurons.find import prompt_splits
from skillneurons.prompts import Head, PromptModel, SoftPrompt, build_head, save_prompt
from skillneurons.prompts.io import check_backbone
from skillneurons.rundir import make_splits, run_manifest
from skillneurons.training import TrainConfig, Trainer, evaluate, fit_and_test
from skillneurons.transfer.sources import prompt_identity, require_soft_prompt

__all__ = [
    "ProjectedPrompt",
    "PromptProjector",
    "apply_projector",
    "load_projector",
    "save_projector",
    "train_projector",
]

#: the projector's hidden width in the paper
DEFAULT_INNER = 768


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
    """``(projector, manifest)`` from a projector artifact (its head tensors, if any: :func:`projector_head_state`)."""
    tensors, man = load_artifact(path, kind="projector")
    try:
        proj = PromptProjector(**{k: int(v) for k, v in man["projector"].items()})
        proj.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("head.")})
    except (KeyError, RuntimeError) as e:
        raise ArtifactError(
            f"{path} is not a complete projector ({str(e).splitlines()[0]}): re-create it with `skillneurons project train`"
        ) from None
    return proj, man


def projector_head_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The trainable tensors of the head a projector was trained through (empty for fixed heads)."""
    tensors, _ = load_artifact(path, kind="projector")
    return {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}


def _source_prompt(path: str | os.PathLike[str]) -> tuple[torch.Tensor, dict[str, Any]]:
    require_soft_prompt(path)  # a delta-tuned artifact has no prompt: refused before loading it
    tensors, man = load_artifact(path, kind="prompt")
    if "prompt" not in tensors:
        raise ArtifactError(f"{path} holds no 'prompt' tensor: pass a prompt artifact")
    return tensors["prompt"].float(), man


def _check_source(proj_man: dict[str, Any], prompt_man: dict[str, Any], path: Any) -> None:
    want, got = proj_man.get("source_backbone", {}), prompt_man.get("backbone", {})
    for key in ("hidden_size", "num_layers", "vocab_size", "model_type"):
        if key in want and key in got and want[key] != got[key]:
            raise ArtifactError(
                f"{path} was trained on {got.get('name')} ({key} {got[key]}) but the projector maps prompts of "
                f"{want.get('name')} ({key} {want[key]}): pass a prompt of {want.get('name')}"
            )


def train_projector(
    source_prompt: str | os.PathLike[str],
    target: str | Backbone,
    out_dir: str | os.PathLike[str] | None,
    *,
    task: str | Task | None = None,
    inner: int = DEFAULT_INNER,
    head: str = "auto",
    layout: str = "auto",
    template: str | None = None,
    max_length: int = 128,
    max_examples: int | None = None,
    split_seed: int | None = None,
    config: TrainConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a projector from ``source_prompt``'s model to ``target`` on a task.

    ``task`` defaults to the source prompt's (built-in) task. The split is ``OUT/split.json`` when
    present (resume), else drawn from ``split_seed`` (default: the source prompt's split seed) over
    ``max_examples`` examples. ``config`` defaults to ``TrainConfig(lr=1e-3)`` (the projector is a
    dense network, not a prompt: the prompt default 3e-2 diverges). The target's head is
    ``build_head(head, target, task.label_words)``. Returns the results dict (also in
    ``OUT/results.json``) with ``test_accuracy`` of the projected training prompt.
    """

    config = config or TrainConfig(lr=1e-3)
    src, src_man = _source_prompt(source_prompt)
    bb = load_backbone(target) if isinstance(target, str) else target
    task_ref = task if task is not None else src_man.get("task", {}).get("name")
    if task_ref is None:
        raise ConfigError(f"{source_prompt} does not name its task: pass the projector-training task")
    t = load_task(task_ref) if isinstance(task_ref, str) else task_ref
    out = Path(out_dir) if out_dir is not None else None
    seed = split_seed if split_seed is not None else int(src_man.get("split", {}).get("seed", config.seed))
    splits = make_splits(t, seed, out, max_examples)
    torch.manual_seed(config.seed)
    proj = PromptProjector(src.shape[0], src.shape[1], bb.hidden_size, inner)
    h = build_head(head, bb, t.label_words)
    pm = PromptModel(
        bb, ProjectedPrompt(proj, src), h, layout=layout, max_length=max_length, template=template
    )
    train, dev, test = splits.part("train"), splits.part("dev"), splits.part("test")
    common = {
        "source_backbone": src_man.get("backbone", {}),
        "target_backbone": bb.identity(),
        "layout": pm.layout,
        "template": template,
        "max_length": max_length,
        "source_prompt": str(source_prompt),
        "source_task": src_man.get("task", {}).get("name"),
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
    results = {
        **common,
        "task": t.name,
        "sizes": {"train": len(train), "dev": len(dev), "test": len(test)},
        "projector": proj.config(),
        "head": h.kind,
        **metrics,
        "projector_path": str(out / "projector.safetensors") if out else None,
    }
    if out is not None and is_main():
        atomic_write_json(out / "results.json", results)
    results["model"] = pm
    results["projector_module"] = proj
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
    *,
    task: str | Task | None = None,
    head: str | None = None,
    split: str | None = "test",
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Project ``source_prompt`` (a prompt of the projector's source model, usually of another task
    than the projector was trained on) into the target model.

    The projected prompt reads labels through ``build_head(head, target, task.label_words)`` with
    the layout/template the projector was trained with; ``head`` defaults to the kind of head the
    projector was trained through (a trained linear head is loaded from the projector artifact, and
    refused for a task with another number of classes); ``task`` defaults to the source prompt's
    task. When ``out`` is given it is saved there as a prompt artifact of the target model, with
    the source run's ``split.json`` copied beside it (so ``skillneurons evaluate`` uses the same
    test split). With ``split`` (default ``test``) the projected prompt is evaluated on that part
    of the source run's split. Returns ``{"prompt_path", "accuracy", "n", ...}``.
    """
    proj, pman = load_projector(projector)
    src, sman = _source_prompt(source_prompt)
    _check_source(pman, sman, source_prompt)
    bb = target if isinstance(target, Backbone) else load_backbone(target or pman["target_backbone"]["name"])
    check_backbone(pman.get("target_backbone", {}), bb, what=f"projector {projector}")
    task_ref = task if task is not None else sman.get("task", {}).get("name")
    if task_ref is None:
        raise ConfigError(f"{source_prompt} does not name its task: pass the task to evaluate on")
    t = load_task(task_ref) if isinstance(task_ref, str) else task_ref
    with torch.no_grad():
        weight = proj(src)
    h = _apply_head(projector, pman, head, bb, t)
    pm = PromptModel(
        bb,
        SoftPrompt(weight),
        h,
        layout=pman["layout"],
        max_length=int(pman.get("max_length", 128)),
        template=pman.get("template"),
    )
    res: dict[str, Any] = {
        "projector": str(projector),
        "source_prompt": str(source_prompt),
        "task": t.name,
        "target_backbone": bb.identity(),
        "prompt_path": None,
    }
    src_split = Path(source_prompt).parent / str(sman.get("split", {}).get("file", "split.json"))
    if out is not None and is_main():
        outp = Path(out)
        outp = outp if outp.suffix == ".safetensors" else outp / "prompt.safetensors"
        outp.parent.mkdir(parents=True, exist_ok=True)
        same_task = sman.get("task", {}).get("fingerprint") == t.fingerprint()
        if (
            same_task
            and src_split.is_file()
            and src_split.resolve() != (outp.parent / "split.json").resolve()
        ):
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
        res["prompt_path"] = str(save_prompt(outp.with_suffix(""), pm, **man))
    if split is not None:
        if split not in ("train", "dev", "test"):
            raise ConfigError(f"split {split!r} is unknown: use train, dev or test")
        if sman.get("task", {}).get("fingerprint") in (None, t.fingerprint()):
            splits = prompt_splits(Path(source_prompt), sman, t)  # the source run's own split
        else:  # another task than the source prompt's: a split drawn from the same seed
            splits = t.split(int(sman.get("split", {}).get("seed", 0)))
        part = splits.part(split)  # type: ignore[arg-type]
        metrics = evaluate(
            pm, part, batch_size, precision=precision, progress=progress, desc=f"projected {t.name}"
        )
        res.update(split=split, accuracy=metrics["accuracy"], loss=metrics["loss"], n=metrics["n"])
    res["model"] = pm
    return res


def _apply_head(projector: Any, pman: dict[str, Any], head: str | None, bb: Backbone, t: Task) -> Head:
    trained = pman.get("head") or {}
    kind = head or str(trained.get("kind", "auto"))
    if kind != "linear":
        return build_head(kind, bb, t.label_words)
    if trained.get("kind") != "linear":
        raise ConfigError(
            f"projector {projector} was trained through a {trained.get('kind', 'fixed')} head, not a trained linear one: "
            "drop --head linear (an untrained linear head reads nothing)"
        )
    n = int(trained.get("config", {}).get("num_classes", -1))
    if n != t.num_classes:
        raise ConfigError(
            f"projector {projector} was trained through a linear head of {n} classes but task '{t.name}' has "
            f"{t.num_classes}: use --head label_words or similarity for this task"
        )
    h = build_head("linear", bb, t.label_words)
    h.load_state_dict(projector_head_state(projector))
    return h


def projector_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a projector artifact (no tensors)."""
    return load_manifest(path, "projector")
