"""Studies: many tasks x seeds through the whole chain (tune, find, perturb, similarity, cross-task
perturbation, transfer and its indicators), resumable step by step, into one ``study.json`` and the
report (``skillneurons study SPEC.toml``).

* :mod:`.config`: the spec (:class:`StudySpec`, read from TOML with :func:`load_spec`), no torch;
* :mod:`.run`: the scheduler (:func:`run_study`, the dry run's plan and cost);
* :mod:`.figures`: the figures with their intervals, from the steps' results;
* :mod:`.results`: :class:`StudyResult`, the typed ``study.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.study.config import StudySpec, load_spec, parse_spec
    from skillneurons.study.results import StudyResult
    from skillneurons.study.run import run_study

__all__ = ["StudyResult", "StudySpec", "load_spec", "parse_spec", "run_study"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "StudySpec": ".config",
        "load_spec": ".config",
        "parse_spec": ".config",
        "StudyResult": ".results",
        "run_study": ".run",
    },
)
