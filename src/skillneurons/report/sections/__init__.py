"""The report's sections: one builder per result type.

* core (the run folder's own artifacts, ``(ReportData, Context) -> Section | None``):
  :mod:`.overview` (the run), :mod:`.training` (prompt tuning), :mod:`.neurons` (skill neurons, per
  layer, map, positions), :mod:`.top` (the top-neuron table and its example texts);
* other experiments (``(files) -> Section``): :mod:`.perturbation` (sweep, cross-task),
  :mod:`.similarity`, :mod:`.pruning`, :mod:`.transfer`, :mod:`.reading` (DynSAN runs, cost,
  ablations);
* :mod:`.common`: the :class:`Context` and the readings several sections share.

A new result type: a predicate in ``discover.RESULT_KINDS``, a reader in ``views``, a module here,
and its entry in ``render.RENDERERS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.report.sections.common import Context
    from skillneurons.report.sections.neurons import (
        section_layers,
        section_map,
        section_positions,
        section_summary,
    )
    from skillneurons.report.sections.overview import section_overview
    from skillneurons.report.sections.perturbation import render_perturb_cross, render_perturb_sweep
    from skillneurons.report.sections.pruning import render_prune
    from skillneurons.report.sections.reading import (
        render_dynsan_ablation,
        render_dynsan_cost,
        render_reading,
    )
    from skillneurons.report.sections.similarity import render_similarity
    from skillneurons.report.sections.top import section_top
    from skillneurons.report.sections.training import section_training
    from skillneurons.report.sections.transfer import render_transfer

__all__ = [
    "Context",
    "render_dynsan_ablation",
    "render_dynsan_cost",
    "render_perturb_cross",
    "render_perturb_sweep",
    "render_prune",
    "render_reading",
    "render_similarity",
    "render_transfer",
    "section_layers",
    "section_map",
    "section_overview",
    "section_positions",
    "section_summary",
    "section_top",
    "section_training",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Context": ".common",
        "render_perturb_cross": ".perturbation",
        "render_perturb_sweep": ".perturbation",
        "render_prune": ".pruning",
        "render_dynsan_ablation": ".reading",
        "render_dynsan_cost": ".reading",
        "render_reading": ".reading",
        "render_similarity": ".similarity",
        "render_transfer": ".transfer",
        "section_layers": ".neurons",
        "section_map": ".neurons",
        "section_overview": ".overview",
        "section_positions": ".neurons",
        "section_summary": ".neurons",
        "section_top": ".top",
        "section_training": ".training",
    },
)
