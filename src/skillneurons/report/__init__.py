"""Self-contained HTML reports of runs: ``skillneurons report RUN_DIR``.

* :mod:`~skillneurons.report.sections`: what a run folder is, and the readers of its results
  (the core artifacts, and the JSON results of other experiments recognised by their content);
* :mod:`~skillneurons.report.examples`: the texts that most activate chosen neurons (streaming);
* :mod:`~skillneurons.report.plots`: the figures (matplotlib, Agg canvas, inline PNG);
* :mod:`~skillneurons.report.render`: the page (:func:`write_report`);
* :mod:`~skillneurons.report.browser`: a headless-Chromium check of a page (tests, screenshots);
* :mod:`~skillneurons.report.cli`: the ``report`` command.
"""

from __future__ import annotations

from skillneurons.report.render import write_report
from skillneurons.report.sections import ReportData, discover

__all__ = ["ReportData", "discover", "write_report"]
