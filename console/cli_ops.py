"""Operator commands: `returnvisit status`, `returnvisit purge`, `returnvisit backup`.

Registered in console/cli.py with `main.add_command(...)` for each of COMMANDS.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from models.base import utcnow

if TYPE_CHECKING:
    from console.cli import Context
    from models.status import StatusReport


def _at(text: str | None, ctx: Context) -> datetime:
    from console.cli_scheduler import parse_at

    return parse_at(text, ctx.settings)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _channels(counts: dict[str, int]) -> str:
    parts = [f"{channel} {count}" for channel, count in sorted(counts.items()) if channel != "total"]
    return (", ".join(parts) + f" (total {counts.get('total', 0)})") if parts else "none"


def _job_line(job_id: str, run: dict[str, Any], tz: Any) -> str:
    at = datetime.fromisoformat(run["at"]).astimezone(tz).strftime("%H:%M:%S")
    if run.get("error"):
        return f"    {job_id:<15} {at}  FAILED: {run['error']}"
    counts = ", ".join(f"{key} {value}" for key, value in sorted((run.get("counts") or {}).items()))
    return f"    {job_id:<15} {at}  {run.get('seconds', 0):.2f} s  {counts or '-'}"


def print_status(report: StatusReport, tz: Any, tick_seconds: int) -> None:
    """Print the status report for a person."""
    click.echo(f"status at {report.now.astimezone(tz):%Y-%m-%d %H:%M:%S} ({tz.key})")
    if not report.schedulers:
        click.echo("WARNING: no scheduler has ever ticked: start the scheduler (returnvisit scheduler)")
    for beat in report.schedulers:
        state = "stale" if beat.stale else ("ok" if beat.ok else "errors")
        click.echo(
            f"scheduler {beat.owner} (host {beat.host}, pid {beat.pid}): last tick "
            f"{beat.last_tick_at.astimezone(tz):%Y-%m-%d %H:%M:%S} ({_ago(beat.age_seconds)}) {state}"
        )
        if beat.last_error:
            click.echo(f"  last error: {beat.last_error}")
        if not beat.stale:
            for job_id, run in beat.jobs.items():
                click.echo(_job_line(job_id, run, tz))
    if report.schedulers and report.stale:
        newest = report.schedulers[0]
        click.echo(
            f"WARNING: the scheduler's last tick was {_ago(newest.age_seconds)} "
            f"(it ticks every {tick_seconds} s): is the scheduler service running?"
        )
    q = report.queue
    click.echo(
        f"queue: due {q['due']} (retries {q['due_retries']}), in flight {q['in_flight']}, "
        f"retrying {q['retrying']}, waiting for first contact {q['waiting_first_contact']}"
    )
    click.echo(f"today (since {report.day_start:%Y-%m-%d %H:%M} {tz.key}):")
    for key, label in (("attempts", "attempts"), ("answers", "answers"), ("completed_surveys", "completed")):
        click.echo(f"  {label}: {_channels(report.today[key])}")
    if not report.gateway_errors:
        click.echo("gateway errors today: none")
        return
    click.echo("gateway errors today:")
    for row in report.gateway_errors:
        click.echo(f"  {row['channel']} {row['status']} error {row['error_code']}: {row['count']}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--at", "at_text", help="Report as of this ISO time (default: now; naive means local time).")
@click.pass_obj
def status(ctx: Context, as_json: bool, at_text: str | None) -> None:
    """Print the scheduler's last tick, queue depths, today's counts and gateway errors."""
    from models.status import status_report

    now = _at(at_text, ctx)
    settings = ctx.settings
    with ctx.sessions() as session:
        report = status_report(session, now, tz=settings.app.tz, tick_seconds=settings.scheduler.tick_seconds)
        session.rollback()
    from scheduler.calendar import work_calendar

    # Statutory holidays end with the calendar package's data: say so before calls land on one.
    missing = work_calendar(settings).years_without_holidays(now.astimezone(settings.app.tz).date())
    if as_json:
        data = {**report.as_dict(), "calendar_years_without_holidays": missing}
        click.echo(json.dumps(data, ensure_ascii=False, sort_keys=True))
        return
    print_status(report, settings.app.tz, settings.scheduler.tick_seconds)
    for year in missing:
        click.echo(
            f"WARNING: the working-day calendar has no statutory holidays for {year}: add them to "
            f"calendar.extra_closed (and the make-up working days to calendar.extra_working)"
        )


def _cutoff(ctx: Context, before: date | None, now: datetime) -> datetime:
    from models.retention import retention_cutoff

    if before is None:
        return retention_cutoff(now, ctx.settings.retention.purge_after_days)
    cutoff = datetime.combine(before, time(0), tzinfo=ctx.settings.app.tz).astimezone(UTC)
    if cutoff > now:
        raise click.BadParameter(f"{before.isoformat()} is in the future", param_hint="--before")
    return cutoff


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would go, per table; change nothing.")
@click.option(
    "--before",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Purge items completed before this date (local). Default: today minus retention.purge_after_days.",
)
@click.option("--yes", is_flag=True, help="Allow a --before date inside the retention period.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_obj
def purge(ctx: Context, dry_run: bool, before: datetime | None, yes: bool, as_json: bool) -> None:
    """Remove phone numbers, names and recordings older than the retention period; figures stay."""
    from models.retention import count_items, retention_cutoff
    from models.retention import purge as run_purge

    settings = ctx.settings
    now = utcnow()
    cutoff = _cutoff(ctx, before.date() if before else None, now)
    period = settings.retention.purge_after_days
    if cutoff > retention_cutoff(now, period) and not dry_run and not yes:
        raise click.UsageError(
            f"--before {cutoff.astimezone(settings.app.tz):%Y-%m-%d} is inside the retention period "
            f"({period} days): add --yes to purge anyway, or --dry-run to look first"
        )
    with ctx.sessions() as session:
        total, _ = count_items(session, cutoff)
        session.rollback()
    bar = None
    if sys.stderr.isatty() and not as_json and total:
        from tqdm import tqdm

        bar = tqdm(total=total, unit=" items", desc="dry run" if dry_run else "purging", file=sys.stderr)
    try:
        report = run_purge(
            ctx.sessions,
            cutoff=cutoff,
            now=now,
            region=settings.phones.default_region,
            dry_run=dry_run,
            batch_size=settings.retention.batch_size,
            actor="cli",
            on_batch=bar.update if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, sort_keys=True))
        return
    local = cutoff.astimezone(settings.app.tz)
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{'dry run: ' if dry_run else ''}personal data of items completed before {local:%Y-%m-%d}")
    if not report.counts:
        click.echo("  nothing to purge")
    for table, fields in sorted(report.counts.items()):
        details = ", ".join(f"{what.replace('_', ' ')} {count}" for what, count in sorted(fields.items()))
        click.echo(f"  {table}: {verb} {details}")
    if report.held_items:
        click.echo(f"  held back: {report.held_items} items with a survey still open or a case not closed")


@click.command()
@click.argument("destination", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def backup(ctx: Context, destination: Path) -> None:
    """Copy the live SQLite database to a new file (PostgreSQL: use pg_dump, see docs/deploy.md)."""
    from models.backup import BackupError, backup_sqlite

    bar: Any = None

    def progress(copied: int, total: int) -> None:
        nonlocal bar
        if bar is None and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=total, unit=" pages", desc=f"backing up to {destination.name}", file=sys.stderr)
        if bar is not None:
            bar.total = total
            bar.update(copied - bar.n)

    try:
        result = backup_sqlite(ctx.settings.database.url, destination, progress=progress)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    click.echo(
        f"backed up {result.pages} pages ({result.size_bytes / 1_048_576:.1f} MiB) to {result.path} "
        f"in {result.seconds:.1f} s; integrity check ok"
    )


COMMANDS = (status, purge, backup)
