"""The report's main table as CSV (UTF-8 with a byte-order mark, so spreadsheets read Chinese)."""

from __future__ import annotations

import csv
from typing import IO

from console.reports.data import ReportData
from console.reports.tables import Table, figures_table


def write_table(table: Table, out: IO[str]) -> None:
    """Write a table (cells already neutralised) as CSV."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.headers)
    writer.writerows(["" if cell is None else cell for cell in row] for row in table.rows)


def write_csv(data: ReportData, out: IO[str]) -> None:
    """Write the figures of every department in the report as CSV."""
    write_table(figures_table(data), out)
