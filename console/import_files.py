"""Read service-item import files (CSV in UTF-8 or GB18030, XLSX, JSON Lines) as a stream of rows."""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from models.intake import (
    REQUIRED_FIELDS,
    Importer,
    ImportSummary,
    IntakeOptions,
    ResultCallback,
    map_headers,
)

Row = tuple[int, dict[str, Any]]
FORMATS = ("csv", "xlsx", "jsonl")


class ImportFileError(ValueError):
    """The file as a whole cannot be read (unknown format, missing columns, bad encoding)."""


def detect_format(path: Path, fmt: str | None = None) -> str:
    """Return the file format from --format or the file name's suffix."""
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    fmt = {"ndjson": "jsonl", "json": "jsonl", "txt": "csv", "tsv": "csv"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise ImportFileError(f"{path.name}: unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    return fmt


def detect_encoding(path: Path, chunk_size: int = 1 << 20) -> str:
    """Return 'utf-8-sig' when the whole file decodes as UTF-8, else 'gb18030' (streamed)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as fh:
        try:
            while chunk := fh.read(chunk_size):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "gb18030"
    return "utf-8-sig"


def _require(mapping: dict[int, str], headers: list[Any], where: str) -> None:
    missing = [name for name in REQUIRED_FIELDS if name not in mapping.values()]
    if missing:
        found = ", ".join(str(h) for h in headers) or "none"
        raise ImportFileError(
            f"{where}: no column for {', '.join(missing)} (headers found: {found}); "
            "add the header names to [intake.columns] in the configuration"
        )


def _read_csv(fh: IO[str], name: str, columns: Mapping[str, list[str]]) -> Iterator[Row]:
    sample = fh.read(8192)
    fh.seek(0)
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(fh, dialect)
    headers = next(reader, [])
    mapping = map_headers(headers, columns)
    _require(mapping, headers, f"{name} line 1")
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        yield reader.line_num, {
            field: record[index] for index, field in mapping.items() if index < len(record)
        }


def _read_xlsx(path: Path, columns: Mapping[str, list[str]]) -> Iterator[Row]:
    from openpyxl import load_workbook

    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        headers = list(next(rows, ()))
        mapping = map_headers(headers, columns)
        _require(mapping, headers, f"{path.name} row 1")
        for number, record in enumerate(rows, start=2):
            if not any(cell not in (None, "") for cell in record):
                continue
            yield number, {
                field: record[index] for index, field in mapping.items() if index < len(record)
            }
    finally:
        workbook.close()


def _read_jsonl(fh: IO[str], name: str, columns: Mapping[str, list[str]]) -> Iterator[Row]:
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, {"__error__": f"not valid JSON ({exc.msg})"}
            continue
        if not isinstance(obj, dict):
            yield number, {"__error__": "not a JSON object"}
            continue
        keys = list(obj)
        mapping = map_headers(keys, columns)
        yield number, {field: obj[keys[index]] for index, field in mapping.items()}


def read_rows(
    path: Path, columns: Mapping[str, list[str]], fmt: str | None = None
) -> Iterator[Row]:
    """Yield (line number, {field: value}) for every data row of an import file."""
    fmt = detect_format(path, fmt)
    if fmt == "xlsx":
        yield from _read_xlsx(path, columns)
        return
    encoding = detect_encoding(path)
    with path.open(encoding=encoding, newline="") as fh:
        if fmt == "csv":
            yield from _read_csv(fh, path.name, columns)
        else:
            yield from _read_jsonl(fh, path.name, columns)



def run_import(
    session_factory: sessionmaker[Session],
    path: Path,
    *,
    options: IntakeOptions,
    columns: Mapping[str, list[str]],
    source: str,
    fmt: str | None = None,
    batch_size: int = 1000,
    on_result: ResultCallback | None = None,
    progress: bool = False,
) -> ImportSummary:
    """Import a file in batches, committing after each; return the summary."""
    rows = read_rows(path, columns, fmt)
    with session_factory() as session, tqdm(
        desc=f"importing {path.name}", unit=" rows", disable=not progress, leave=False
    ) as bar:
        importer = Importer(session, options, source, on_result=on_result)
        while batch := list(islice(rows, batch_size)):
            importer.import_batch(batch)
            session.commit()
            bar.update(len(batch))
        return importer.summary
