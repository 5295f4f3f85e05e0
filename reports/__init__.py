"""Reports: Quarto sources built from a run's results files, and their rendering.

Reports never compute statistics: they read ``results.json`` and ``decision.json``.
"""

from reports.qmd import QmdDocument, parse_qmd, validate_qmd
from reports.render import Rendered, render_report

__all__ = ["QmdDocument", "Rendered", "parse_qmd", "render_report", "validate_qmd"]
