"""Self-contained HTML reports of runs: ``skillneurons report RUN_DIR``.

* :mod:`~skillneurons.report.config`: :class:`ReportConfig`, the report's options (no torch);
* :mod:`~skillneurons.report.discovery`: what a run folder is, and the readers of its core artifacts
  (tuning runs, skill neurons) and of the result JSON of other experiments (recognised by content);
* :mod:`~skillneurons.report.views`: the loading layer, one reader per result type;
* :mod:`~skillneurons.report.sections`: one section builder per result type;
* :mod:`~skillneurons.report.html`: the page's HTML helpers and the page, with ``assets/`` (CSS, JS);
* :mod:`~skillneurons.report.examples`: the texts that most activate chosen neurons (streaming);
* :mod:`~skillneurons.report.plots`: the figures (matplotlib, Agg canvas, inline PNG);
* :mod:`~skillneurons.report.render`: the sections in page order, and :func:`write_report` (the
  ``report`` command, :mod:`skillneurons.cli.report`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillneurons._lazy import lazy_exports

if TYPE_CHECKING:
    from skillneurons.report.config import ReportConfig
    from skillneurons.report.discovery import ReportData, discover
    from skillneurons.report.render import write_report

__all__ = ["ReportConfig", "ReportData", "discover", "write_report"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ReportConfig": ".config",
        "ReportData": ".discovery",
        "discover": ".discovery",
        "write_report": ".render",
    },
)
