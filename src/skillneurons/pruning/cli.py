"""The ``skillneurons prune`` subcommand: a thin layer over :func:`skillneurons.pruning.run.prune_model`.

Wire it into the main parser with ``register(sub)`` (``sub`` being the subparsers object).
"""

from __future__ import annotations

import argparse
from typing import Any


def _layers(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--layers '{text}' is not a comma-separated list of layer numbers"
        ) from None


def register(sub: Any) -> None:
    """Add the ``prune`` subcommand to the subparsers ``sub``."""
    from skillneurons.cli import _task_args

    p = sub.add_parser("prune", help="prune a model to its skill neurons: a smaller, faster model, saved")
    p.add_argument(
        "neurons", help="skill-neuron artifact from `skillneurons find` (NEURONS/skill_neurons.safetensors)"
    )
    p.add_argument(
        "--out", required=True, help="folder for the pruned model (replaced if it holds an earlier one)"
    )
    p.add_argument(
        "--rho", type=float, default=0.02, help="fraction of neurons kept per pruned layer (default 0.02)"
    )
    p.add_argument(
        "--first-layer",
        type=int,
        help="prune layers [N, L) (default L // 4: the original kept 3 of 12 layers whole)",
    )
    p.add_argument("--layers", type=_layers, help="comma-separated layers to prune, instead of --first-layer")
    p.add_argument(
        "--global-selection",
        action="store_true",
        help="select the top rho of all neurons instead of rho of every layer",
    )
    p.add_argument(
        "--model", help="the unpruned model (default: the one recorded in the skill-neuron artifact)"
    )
    p.add_argument(
        "--prompt", help="a prompt trained on the unpruned model: evaluated before and after pruning"
    )
    p.add_argument(
        "--split", default="test", choices=["train", "dev", "test"], help="split part to evaluate on"
    )
    p.add_argument(
        "--retune", action="store_true", help="re-tune --prompt on the pruned model (OUT/retuned/)"
    )
    p.add_argument("--epochs", type=float, default=1.0, help="--retune: epochs")
    p.add_argument("--max-steps", type=int, help="--retune: steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=32, help="--retune: training batch size")
    p.add_argument("--lr", type=float, default=3e-2, help="--retune: learning rate of the prompt")
    p.add_argument("--seed", type=int, default=0, help="--retune: training seed")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    _task_args(p, required=False)
    p.set_defaults(fn=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    from skillneurons.cli import _load_task_from
    from skillneurons.pruning.config import PruneConfig
    from skillneurons.pruning.run import prune_model

    config = PruneConfig(
        rho=args.rho,
        first_layer=args.first_layer,
        layers=args.layers,
        global_selection=args.global_selection,
        split=args.split,
        retune=args.retune,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        precision=args.precision,
    )
    res = prune_model(
        args.neurons,
        args.out,
        config,
        model=args.model,
        prompt=args.prompt,
        task=_load_task_from(args) if args.task else None,
        progress=not getattr(args, "quiet", False),
    )
    print(res.text)
    return 0
