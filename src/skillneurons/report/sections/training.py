"""The prompt-tuning section: dev accuracy and loss curves of every run."""

from __future__ import annotations

from skillneurons.report import plots
from skillneurons.report.discovery import ReportData, run_labels
from skillneurons.report.html import Section, figure, para
from skillneurons.report.sections.common import Context
from skillneurons.report.views import HistoryPoint

__all__ = ["section_training"]


def section_training(data: ReportData, ctx: Context) -> Section | None:
    runs = []
    for t, label in zip(data.tunes, run_labels(data.tunes)):
        if t.history:
            runs.append(
                plots.Curve(
                    label + (" (in progress)" if t.history_from_checkpoint else ""),
                    HistoryPoint.read_all(t.history),
                    t.best_step,
                )
            )
    if not runs:
        return None
    body = [
        para(
            "Dev accuracy and training loss at every evaluation of each prompt-tuning run (one colour per "
            "run, labelled by what differs between the runs); the star marks the checkpoint kept as the "
            "prompt."
        ),
        figure(plots.training_curves(runs), "training curves: dev accuracy and loss vs step"),
    ]
    return Section("training", "Prompt tuning", "".join(body), "Training")
