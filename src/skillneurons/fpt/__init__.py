"""Fast prompt tuning (FPT): prompt tuning on progressively larger partial models of the frozen
backbone, recycling the prompt and the optimizer state (REFERENCE.md section 7).

* :mod:`~skillneurons.fpt.partial` - partial models (layer dropping, FFN narrowing) sharing the
  full model's modules;
* :mod:`~skillneurons.fpt.schedule` - stage schedules and their string syntax;
* :mod:`~skillneurons.fpt.progressive` - the trainer hooks and the FLOP count.

``skillneurons tune --progressive 25,50,75,full ...`` or ``tune_prompt(..., progressive="25,50,75,full")``.
"""

from skillneurons.fpt.partial import (
    PartialModel,
    activation_magnitudes,
    count_for_fraction,
    select_layers,
    top_fraction_mask,
)
from skillneurons.fpt.progressive import ProgressiveTraining, count_step_flops
from skillneurons.fpt.schedule import ProgressiveSchedule, Stage, parse_schedule

__all__ = [
    "PartialModel",
    "ProgressiveSchedule",
    "ProgressiveTraining",
    "Stage",
    "activation_magnitudes",
    "count_for_fraction",
    "count_step_flops",
    "parse_schedule",
    "select_layers",
    "top_fraction_mask",
]
