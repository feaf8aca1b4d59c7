"""CLI of the quarterly cycle: `returnvisit cases ...`, `quarter close`, `report`, `letters`.

Register with `main.add_command(cases)`, `quarter`, `report`, `letters` (console.cli's group).
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.cli import Context, at_most, pass_ctx
from models.base import utcnow
from models.cases import Case, CaseEvent, CaseState, Escalation
from models.quarters import QuarterClose

# What both actor columns hold (a case event's, a quarter close's).
ACTOR_LENGTH = min(CaseEvent.__table__.c.actor.type.length, QuarterClose.__table__.c.closed_by.type.length)

ACTOR = click.option(
    "--actor",
    default=getpass.getuser,
    show_default="the login name",
    callback=at_most(ACTOR_LENGTH),
    help="Who does this (recorded).",
)


def _case(session: Session, case_id: int) -> Case:
    if not 0 < case_id < 2**63:  # beyond the id column's integers: no case, not an overflow
        raise click.ClickException(f"no case {case_id}")
    case = session.get(Case, case_id)
    if case is None:
        raise click.ClickException(f"no case {case_id}")
    return case


def _department_id(session: Session, code: str) -> int:
    from models.departments import department_by_code

    department = department_by_code(session, code)
    if department is None:
        raise click.ClickException(f"no department with code {code!r}")
    return department.id


def _case_summary(case: Case, code: str, ctx: Context) -> dict[str, Any]:
    tz = ctx.settings.app.tz

    def local(value: Any) -> str | None:
        return None if value is None else value.astimezone(tz).strftime("%Y-%m-%d %H:%M")

    return {
        "id": case.id,
        "department": code,
        "quarter": case.quarter,
        "state": case.state,
        "grade": case.grade,
        "categories": list(case.categories or []),
        "opened": local(case.opened_at),
        "due": local(case.due_at),
        "answered": local(case.answered_at),
        "verification": case.verification_result,
        "escalation": case.escalation,
    }


@click.group()
def cases() -> None:
    """Rectification cases opened by bad reviews."""


@cases.command("list")
@click.option("--quarter", help="Only cases of this quarter (2026Q3).")
@click.option("--department", "department_code", help="Only this department (code).")
@click.option("--state", type=click.Choice([s.value for s in CaseState]), multiple=True)
@click.option("--overdue", is_flag=True, help="Only open or reopened cases past their due time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@pass_ctx
def list_cases(
    ctx: Context,
    quarter: str | None,
    department_code: str | None,
    state: tuple[str, ...],
    overdue: bool,
    as_json: bool,
) -> None:
    """List cases, oldest first."""
    from models.departments import Department

    with ctx.sessions() as session:
        stmt = select(Case, Department.code).join(Department, Department.id == Case.department_id)
        if quarter:
            from console.reports.data import checked_quarter

            try:
                quarter = checked_quarter(quarter)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--quarter") from None
            stmt = stmt.where(Case.quarter == quarter)
        if department_code:
            stmt = stmt.where(Case.department_id == _department_id(session, department_code))
        if state:
            stmt = stmt.where(Case.state.in_(state))
        if overdue:
            stmt = stmt.where(Case.state.in_([CaseState.OPEN, CaseState.REOPENED]), Case.due_at < utcnow())
        rows = session.execute(stmt.order_by(Case.opened_at, Case.id)).all()
        for case, code in rows:
            summary = _case_summary(case, code, ctx)
            if as_json:
                click.echo(json.dumps(summary, ensure_ascii=False))
            else:
                click.echo(
                    f"{case.id:>6}  {summary['quarter']}  {code:<12} {case.state:<10} "
                    f"{case.grade:<18} due {summary['due']}  {','.join(summary['categories'])}"
                )
        if not as_json:
            click.echo(f"{len(rows)} case(s)")


@cases.command("show")
@click.argument("case_id", type=int)
@pass_ctx
def show_case(ctx: Context, case_id: int) -> None:
    """Show a case with its feedback and every transition."""
    from models.cases_ops import events_of
    from models.departments import Department

    with ctx.sessions() as session:
        case = _case(session, case_id)
        department = session.get(Department, case.department_id)
        code = department.code if department else str(case.department_id)
        for key, value in _case_summary(case, code, ctx).items():
            click.echo(f"{key:>13}: {value}")
        for key in ("comment", "feedback", "escalation_reason"):
            if getattr(case, key):
                click.echo(f"{key:>13}: {getattr(case, key)}")
        click.echo("events:")
        tz = ctx.settings.app.tz
        for event in events_of(session, case):
            at = event.at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
            click.echo(
                f"  {at}  {event.actor:<20} {event.from_state or '-':>9} -> {event.to_state:<9} "
                f"{event.note or ''}"
            )


@cases.command("answer")
@click.argument("case_id", type=int)
@click.option("--feedback", help="How the complaint was handled (the rectification).")
@click.option(
    "--feedback-file", type=click.File("r", encoding="utf-8"), help="Read the feedback from a file."
)
@ACTOR
@pass_ctx
def answer(ctx: Context, case_id: int, feedback: str | None, feedback_file: Any, actor: str) -> None:
    """Record a department's feedback and schedule the verification visit."""
    from models.cases_ops import CaseError, answer_case

    if feedback is not None and feedback_file is not None:
        raise click.UsageError("give --feedback or --feedback-file, not both")
    try:
        text = feedback_file.read() if feedback_file is not None else feedback
    except UnicodeDecodeError:
        raise click.BadParameter("the file is not UTF-8 text", param_hint="--feedback-file") from None
    if not text:
        raise click.UsageError("give --feedback or --feedback-file")
    now = utcnow()
    with ctx.sessions() as session:
        case = _case(session, case_id)
        try:
            visit = answer_case(session, case, text, actor, ctx.settings, now)
        except CaseError as exc:
            raise click.ClickException(str(exc)) from exc
        at = visit.next_attempt_at
        session.commit()
    when = at.astimezone(ctx.settings.app.tz).strftime("%Y-%m-%d %H:%M") if at else "-"
    click.echo(f"case {case_id} answered; verification visit {visit.id} ({visit.channel}) at {when}")


@cases.command("escalate")
@click.argument("case_id", type=int, required=False)
@click.option("--to", "decision", type=click.Choice([e.value for e in Escalation]), help="The decision.")
@click.option("--reason", help="Why (recorded with the decision).")
@click.option("--overdue", is_flag=True, help="Escalate every overdue case now (the job's sweep).")
@ACTOR
@pass_ctx
def escalate(
    ctx: Context, case_id: int | None, decision: str | None, reason: str | None, overdue: bool, actor: str
) -> None:
    """Mark a case for interview or discipline inspection, or sweep overdue cases (--overdue)."""
    from models.cases_ops import CaseError, mark_escalation

    if overdue:
        if case_id is not None:
            raise click.UsageError("give either CASE_ID or --overdue")
        from scheduler.escalation import escalate_job

        counts = escalate_job(ctx.sessions, ctx.settings, utcnow)
        click.echo(json.dumps(counts))
        return
    if case_id is None or decision is None or not reason:
        raise click.UsageError("give CASE_ID, --to interview|discipline and --reason")
    with ctx.sessions() as session:
        case = _case(session, case_id)
        try:
            mark_escalation(session, case, Escalation(decision), reason, actor, utcnow())
        except CaseError as exc:
            raise click.ClickException(str(exc)) from exc
        session.commit()
        state = case.state
    if state == CaseState.ESCALATED:
        click.echo(f"case {case_id} escalated: {decision}")
    else:  # its verification visit is still to come: the decision is kept, the citizen still asked
        click.echo(f"case {case_id}: {decision} recorded; it waits for its verification visit")


@click.group()
def quarter() -> None:
    """The quarterly cycle: close a quarter and freeze its figures."""


@quarter.command("close")
@click.argument("quarter_name", metavar="QUARTER")
@ACTOR
@pass_ctx
def close(ctx: Context, quarter_name: str, actor: str) -> None:
    """Close a finished quarter: freeze and publish its figures (once)."""
    from console.reports.data import checked_quarter
    from models.quarter_ops import close_quarter, snapshots

    with ctx.sessions() as session:
        try:
            closing = close_quarter(session, checked_quarter(quarter_name), actor, ctx.settings, utcnow())
        except ValueError as exc:  # QuarterError, or a malformed quarter or one out of range
            raise click.ClickException(str(exc)) from exc
        count = len(snapshots(session, closing.quarter))
        session.commit()
    click.echo(f"quarter {closing.quarter} closed: {count} department snapshot(s) frozen")


def _build(ctx: Context, session: Session, quarter_name: str, department_code: str | None) -> Any:
    from console.reports import build_report

    if department_code:
        _department_id(session, department_code)
    try:
        return build_report(session, quarter_name, ctx.settings, utcnow(), department_code)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.argument("quarter_name", metavar="QUARTER")
@click.option(
    "--format", "fmt", type=click.Choice(["html", "xlsx", "csv"]), default="html", show_default=True
)
@click.option("--department", "department_code", help="Only this department (code).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
@pass_ctx
def report(ctx: Context, quarter_name: str, fmt: str, department_code: str | None, out: Path) -> None:
    """Write a quarter's report: HTML with charts (prints on A4), XLSX workbook, or CSV."""
    with ctx.sessions() as session:
        data = _build(ctx, session, quarter_name, department_code)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        from console.reports.html import render_html

        out.write_text(render_html(data, ctx.settings.cases.min_ratings_to_rank), encoding="utf-8")
    elif fmt == "xlsx":
        from console.reports.xlsx import write_xlsx

        write_xlsx(data, out)
    else:
        from console.reports.csv import write_csv

        with out.open("w", encoding="utf-8-sig", newline="") as fh:
            write_csv(data, fh)
    state = "published" if data.published else "provisional"
    click.echo(f"wrote {out} ({fmt}, {len(data.figures)} department(s), {state})")


@click.command()
@click.argument("quarter_name", metavar="QUARTER")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--department", "department_code", help="Only this department (code).")
@pass_ctx
def letters(ctx: Context, quarter_name: str, out_dir: Path, department_code: str | None) -> None:
    """Write a notification letter (HTML) per department into a directory."""
    from console.reports.letters import write_letters

    with ctx.sessions() as session:
        data = _build(ctx, session, quarter_name, department_code)
    written = write_letters(data, out_dir, ctx.settings.cases.min_ratings_to_rank)
    click.echo(f"wrote {len(written)} letter(s) to {out_dir}")


COMMANDS = (cases, quarter, report, letters)
