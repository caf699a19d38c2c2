"""Fast prompt tuning (FPT): prompt tuning on progressively larger partial models of the frozen
backbone, recycling the prompt and the optimizer state (REFERENCE.md section 7).

* :mod:`~skillneurons.fpt.config` - :class:`ProgressiveConfig`, the options (no torch);
* :mod:`~skillneurons.fpt.partial` - partial models (layer dropping, FFN narrowing) sharing the
  full model's modules;
* :mod:`~skillneurons.fpt.schedule` - stage schedules and their string syntax;
* :mod:`~skillneurons.fpt.progressive` - the trainer hooks (:func:`progressive_hooks` builds them
  from a config), the FLOP count and the typed stage summary.

``skillneurons tune --progressive 25,50,75,full ...`` or ``tune_prompt(..., progressive="25,50,75,full")``.
"""

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.fpt.config import ProgressiveConfig
    from skillneurons.fpt.partial import (
        PartialModel,
        activation_magnitudes,
        count_for_fraction,
        select_layers,
        top_fraction_mask,
    )
    from skillneurons.fpt.progressive import (
        ProgressiveSummary,
        ProgressiveTraining,
        StageSummary,
        count_step_flops,
        progressive_hooks,
    )
    from skillneurons.fpt.schedule import ProgressiveSchedule, Stage, parse_schedule

__all__ = [
    "PartialModel",
    "ProgressiveConfig",
    "ProgressiveSchedule",
    "ProgressiveSummary",
    "ProgressiveTraining",
    "Stage",
    "StageSummary",
    "activation_magnitudes",
    "count_for_fraction",
    "count_step_flops",
    "parse_schedule",
    "progressive_hooks",
    "select_layers",
    "top_fraction_mask",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "PartialModel": ".partial",
        "ProgressiveConfig": ".config",
        "ProgressiveSchedule": ".schedule",
        "ProgressiveSummary": ".progressive",
        "ProgressiveTraining": ".progressive",
        "Stage": ".schedule",
        "StageSummary": ".progressive",
        "activation_magnitudes": ".partial",
        "count_for_fraction": ".partial",
        "count_step_flops": ".progressive",
        "parse_schedule": ".schedule",
        "progressive_hooks": ".progressive",
        "select_layers": ".partial",
        "top_fraction_mask": ".partial",
    },
)
