"""Read service-item import files (CSV in UTF-8 or GB18030, XLSX, JSON Lines) as a stream of rows."""

from __future__ import annotations

import codecs
import csv
import gc
import json
import multiprocessing
import os
import pickle
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import islice
from multiprocessing.connection import Connection as Connection_
from multiprocessing.process import BaseProcess
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from models.base import utcnow
from models.intake import (
    REQUIRED_FIELDS,
    ROW_COLUMNS,
    Importer,
    ImportSummary,
    IntakeOptions,
    RejectedRow,
    ResultCallback,
    ValidRow,
    map_headers,
    validate_rows,
)
from models.items_bulk import bulk_import_settings
from models.translatable import Translatable

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
    fields = list(mapping.values())
    pick = itemgetter(*mapping)  # a tuple: map_headers maps at least the required columns
    width = max(mapping) + 1
    for record in reader:
        if not "".join(record).strip():
            continue  # a blank or whitespace-only line
        if len(record) >= width:
            yield reader.line_num, dict(zip(fields, pick(record), strict=True))
        else:
            yield (
                reader.line_num,
                {field: record[index] for index, field in mapping.items() if index < len(record)},
            )


def _read_xlsx(path: Path, columns: Mapping[str, list[str]]) -> Iterator[Row]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError) as exc:  # KeyError: a zip of other things
        raise ImportFileError(f"{path.name}: not an XLSX workbook ({exc})") from None
    try:
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        headers = list(next(rows, ()))
        mapping = map_headers(headers, columns)
        _require(mapping, headers, f"{path.name} row 1")
        for number, record in enumerate(rows, start=2):
            if not any(cell not in (None, "") for cell in record):
                continue
            yield number, {field: record[index] for index, field in mapping.items() if index < len(record)}
    finally:
        workbook.close()


def _read_jsonl(fh: IO[str], name: str, columns: Mapping[str, list[str]]) -> Iterator[Row]:
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, {"__error__": Translatable("not valid JSON (%(detail)s)", detail=exc.msg)}
            continue
        if not isinstance(obj, dict):
            yield number, {"__error__": "not a JSON object"}
            continue
        keys = list(obj)
        mapping = map_headers(keys, columns)
        yield number, {field: obj[keys[index]] for index, field in mapping.items()}


def read_rows(path: Path, columns: Mapping[str, list[str]], fmt: str | None = None) -> Iterator[Row]:
    """Yield (line number, {field: value}) for every data row of an import file."""
    fmt = detect_format(path, fmt)
    if fmt == "xlsx":
        yield from _read_xlsx(path, columns)
        return
    encoding = detect_encoding(path)
    line = 0
    try:
        with path.open(encoding=encoding, newline="") as fh:
            reader = _read_csv if fmt == "csv" else _read_jsonl
            for line, row in reader(fh, path.name, columns):
                yield line, row
    except UnicodeDecodeError:
        raise ImportFileError(
            f"{path.name}: cannot be read as text after line {line} (neither UTF-8 nor GB18030): "
            f"is it a {fmt.upper()} file?"
        ) from None


# Rows per transaction of a file import. Big transactions keep SQLite from rewriting the same index
# pages to its WAL again and again, and save PostgreSQL a commit per thousand rows.
FILE_BATCH_ROWS = 10_000
# Files at least this big are read and validated in a worker process while this one writes, when a
# core is idle for it; for smaller ones starting the worker (a fresh interpreter) costs more than it
# saves. Handing rows over costs CPU too, so on a busy machine one process imports faster.
WORKER_MIN_BYTES = 8 * 1024 * 1024
# Measured with this process idle: it will take one core, the reader another, and both run a
# third slower while other work shares those cores.
WORKER_IDLE_CORES = 1.5

Batch = list[ValidRow | RejectedRow]


class ImportWorkerError(RuntimeError):
    """The worker process that reads and validates the file stopped without finishing."""


def run_import(
    session_factory: sessionmaker[Session],
    path: Path,
    *,
    options: IntakeOptions,
    columns: Mapping[str, list[str]],
    source: str,
    fmt: str | None = None,
    batch_size: int = FILE_BATCH_ROWS,
    on_result: ResultCallback | None = None,
    progress: bool = False,
    worker: bool | None = None,
) -> ImportSummary:
    """Import a file in batches, committing after each; return the summary.

    `worker` reads and validates the file in a second process while this one writes (None: for
    big files when a core is idle). Both ways import and report the same rows.
    The second process is spawned, so a script that calls this must keep its own top-level code
    under `if __name__ == "__main__":` (the CLI and the web apps do).
    """
    now = utcnow()
    if worker is None:
        worker = path.stat().st_size >= WORKER_MIN_BYTES and _idle_cores() >= WORKER_IDLE_CORES
    reading = _batches_from_worker if worker else _batches_here
    with (
        reading(path, columns, fmt, options, now, batch_size) as batches,
        _import_session(session_factory) as (session, connection),
        tqdm(desc=f"importing {path.name}", unit=" rows", disable=not progress, leave=False) as bar,
    ):
        importer = Importer(session, options, source, now=now, on_result=on_result)
        with bulk_import_settings(connection), _long_lived_objects_frozen():
            for batch in batches:
                importer.import_validated(batch)
                session.commit()
                bar.update(len(batch))
        return importer.summary


def validated_batches(
    path: Path,
    columns: Mapping[str, list[str]],
    fmt: str | None,
    options: IntakeOptions,
    now: datetime,
    batch_size: int,
) -> Iterator[Batch]:
    """Read the file and yield its rows validated, batch_size at a time."""
    rows = read_rows(path, columns, fmt)
    while batch := validate_rows(islice(rows, batch_size), options, now):
        yield batch


@contextmanager
def _batches_here(*args: Any) -> Iterator[Iterator[Batch]]:
    yield validated_batches(*args)


@contextmanager
def _batches_from_worker(*args: Any) -> Iterator[Iterator[Batch]]:
    # spawn, not fork: the parent may be a threaded web server holding database connections.
    context = multiprocessing.get_context("spawn")
    # A plain pipe, no queue thread: the reader blocks on sending its next batch until this process
    # takes it, so one batch is validated ahead of the one being written and memory stays bounded.
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(
        target=_validate_in_worker, args=(sending, *args), name="returnvisit-import-reader", daemon=True
    )
    process.start()
    sending.close()  # the reader holds the only sending end: its exit ends the pipe
    try:
        yield _receive(receiving, process)
    finally:
        if process.is_alive():
            process.terminate()  # the writer stopped early (an error): the rest is not wanted
        process.join()
        receiving.close()


def _validate_in_worker(sending: Connection_, *args: Any) -> None:
    gc.freeze()  # this process's modules and classes: see _long_lived_objects_frozen
    try:
        for batch in validated_batches(*args):
            sending.send(_pack(batch))
    except BaseException as exc:  # every failure goes back to the writer
        try:
            pickle.dumps(exc)
        except Exception:
            exc = ImportWorkerError(f"{type(exc).__name__}: {exc}")
        sending.send(exc)
        return
    sending.send(None)


def _receive(receiving: Connection_, process: BaseProcess) -> Iterator[Batch]:
    while True:
        try:
            item = receiving.recv()
        except EOFError:
            process.join()
            raise ImportWorkerError(
                f"the reader process stopped unexpectedly (exit code {process.exitcode})"
            ) from None
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield _unpack(item)


# Validated rows cross the pipe as plain tuples with repeated texts shared and the completion time
# as integer microseconds: pickling a NamedTuple or a datetime per row costs more than validating it.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
assert ROW_COLUMNS[-1] == "completed_at"


def _pack(batch: Batch) -> list[tuple[Any, ...]]:
    shared: dict[str, str] = {}
    share = shared.setdefault
    packed: list[tuple[Any, ...]] = []
    for outcome in batch:
        if type(outcome) is RejectedRow:
            packed.append(outcome)
            continue
        line, key, department, name, values = outcome
        matter, channel = values[0], values[1]
        packed.append(
            (
                line,
                key,
                share(department, department),
                share(name, name),
                share(matter, matter),
                share(channel, channel) if channel else channel,
                *values[2:-1],
                (values[-1] - _EPOCH) // _MICROSECOND,
            )
        )
    return packed


def _unpack(packed: list[tuple[Any, ...]]) -> Batch:
    return [
        ValidRow(row[0], row[1], row[2], row[3], (*row[4:-1], _EPOCH + timedelta(microseconds=row[-1])))
        if type(row) is tuple
        else row
        for row in packed
    ]


@contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """Keep the cyclic garbage collector from walking every long-lived object again and again.

    An import holds some 10,000 rows' tuples at a time; as they age they set off full collections,
    each walking every module, class and SQLAlchemy object of the process (a sixth of an import's
    CPU). The objects that exist when the import starts are set aside (gc.freeze) until it ends.
    """
    if gc.get_freeze_count():  # someone else froze objects (e.g. a preforking server): theirs
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _idle_cores(interval: float = 0.25) -> float:
    """How many cores sat idle just now (sampled from /proc/stat; else cores minus the load average)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        idle_before, total_before = _cpu_ticks()
        time.sleep(interval)
        idle_after, total_after = _cpu_ticks()
    except OSError:  # no /proc here
        try:
            return cores - os.getloadavg()[0]
        except OSError:
            return cores
    total = total_after - total_before
    return cores * (idle_after - idle_before) / total if total else cores


def _cpu_ticks() -> tuple[int, int]:
    """(idle, all) CPU time since boot, summed over every core, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        ticks = [int(value) for value in fh.readline().split()[1:9]]
    return ticks[3] + ticks[4], sum(ticks)  # idle + iowait; guest time is part of user already


@contextmanager
def _import_session(
    session_factory: sessionmaker[Session],
) -> Iterator[tuple[Session, Connection | None]]:
    """Open a session that keeps one connection for the whole import, and name that connection."""
    bind = session_factory.kw.get("bind")
    if isinstance(bind, Engine):
        with bind.connect() as connection, session_factory(bind=connection) as session:
            yield session, connection
    else:  # already bound to one connection (tests), or to something we leave alone
        with session_factory() as session:
            yield session, bind if isinstance(bind, Connection) else None
