"""``report.md``: every number computed from the recorded runs, beside the paper's claims.

The report is assembled from three layers: result queries
(:mod:`~mmojax.reproduce._results`), pure section builders
(:mod:`~mmojax.reproduce._sections`, :mod:`~mmojax.reproduce._diagnostics`,
:mod:`~mmojax.reproduce._verdicts`, each returning its lines and findings) and
the figures (:mod:`~mmojax.reproduce._figures`). Only this module writes files.
"""

from __future__ import annotations

import datetime
import os

from mmojax.reproduce import _diagnostics, _figures, _results, _sections, _verdicts


def build_report(results: _results.Results, figures, target: float, generated: str) -> str:
    """The report's markdown from ``results`` and the drawn ``figures``.

    Args:
      results: the finished runs.
      figures: ``[(caption, path relative to the report)]``.
      target: the steps-to-target accuracy.
      generated: the timestamp written in the header.
    """
    sections = [
        _sections.header(results, generated),
        _sections.ablation(results),
        _sections.tasks(results),
        _sections.steps(results, target),
        _diagnostics.compute(results, target),
        _diagnostics.budget(results),
        _diagnostics.figures(figures),
        _diagnostics.collapse(results),
        _diagnostics.ensembles(results),
    ]
    findings = [f for s in sections for f in s.findings]
    sections.append(_verdicts.verdicts(findings))
    return "\n".join(line for s in sections for line in s.lines) + "\n"


def write_report(workdir: str, opts) -> str:
    """Builds ``workdir/report.md`` and ``workdir/figures/`` from every finished run."""
    results = _results.load(workdir)
    times = _diagnostics.compute_times(results)
    figures = _figures.report_figures(results, workdir, times.normalised() if times else None)
    generated = datetime.datetime.now().isoformat(timespec="seconds")
    text = build_report(results, figures, opts.target, generated)
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write(text)
    return path
