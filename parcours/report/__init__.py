"""The journey report: one self-contained HTML file drawn from the published DuckDB views.

It reads only the views, read-only, as a BI tool does; every script and style is inlined
(Apache ECharts from `assets/`), so the file opens offline and makes no network request.
"""

from parcours.report.render import ReportResult, build_report, write_report
from parcours.report.views import Filters

__all__ = ["Filters", "ReportResult", "build_report", "write_report"]
