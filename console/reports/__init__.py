"""Quarterly reports: the data they show, and its renderings (HTML with SVG charts, XLSX, CSV, letters).

`build_report` gathers everything once from the store (published snapshots for a closed quarter, live
figures otherwise); the renderers are pure functions of that data.
"""

from __future__ import annotations

from console.reports.data import CaseRow, ReportData, build_report

__all__ = ["CaseRow", "ReportData", "build_report"]
