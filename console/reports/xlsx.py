"""The report as an XLSX workbook: a sheet per table (openpyxl)."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from openpyxl import Workbook
from openpyxl.styles import Font

from console.reports.data import ReportData
from console.reports.tables import all_tables, neutralise

PERCENT_HINTS = ("rate", "Wilson", "RR1", "RR2", "COOP1", "REF1", "CON1")


def build_workbook(data: ReportData) -> Workbook:
    """Return a workbook with an information sheet and one sheet per table."""
    book = Workbook()
    about = book.active
    assert about is not None
    about.title = "Report"
    status = "provisional"
    if data.published:
        status = f"published {data.local(data.closed_at)} by {data.closed_by}"
    for key, value in (
        ("organisation", data.org),
        ("quarter", data.quarter),
        ("department", data.department_code or "all"),
        ("status", status),
        ("generated", data.local(data.generated_at)),
    ):
        about.append([key, neutralise(value)])
    for table in all_tables(data):
        sheet = book.create_sheet(table.name)
        sheet.append(table.headers)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in table.rows:
            sheet.append(row)
        for index, header in enumerate(table.headers, start=1):
            letter = sheet.cell(row=1, column=index).column_letter
            sheet.column_dimensions[letter].width = max(10, min(40, len(header) + 2))
            if any(hint in header for hint in PERCENT_HINTS) and "change" not in header:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                    cell.number_format = "0.0%"
        sheet.freeze_panes = "C2" if table.headers[:1] == ["部门编码 code"] else "A2"
    return book


def write_xlsx(data: ReportData, out: str | Path | IO[bytes]) -> None:
    """Write the workbook to a path or a binary stream."""
    build_workbook(data).save(out)
