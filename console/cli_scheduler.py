"""`returnvisit campaign ...` and `returnvisit scheduler ...`: campaigns as files, the scheduler process.

Registered in console/cli.py with `main.add_command(campaign)` and `main.add_command(scheduler)`.
The commands use the CLI's Context object (settings, sessions, engine) from `click.pass_obj`.
"""

from __future__ import annotations

import json
import signal
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.campaigns import Campaign
from models.settings import Settings
from models.surveys import Survey, SurveyState
from scheduler.gateway import Gateway

if TYPE_CHECKING:
    from console.cli import Context

# Used when a campaign file gives no SMS text for the survey's language.


def make_gateway(settings: Settings) -> Gateway:
    """Return the gateway `gateway.kind` names: Twilio's REST API or the local simulated network."""
    if settings.gateway.kind == "twilio":
        from ivr.gateway import TwilioGateway

        return TwilioGateway(settings)
    from ivr.simulator.gateway import from_settings

    # Simulated citizens answer through the webhook app at app.public_base_url, over HTTP.
    return from_settings(settings)


def make_compose_sms(settings: Settings) -> Callable[[Session, Survey], str]:
    """Return the SMS composer: opens the survey's SMS conversation and returns its first text."""
    from ivr.sms_outbound import compose_sms

    def compose(session: Session, survey: Survey) -> str:
        return compose_sms(session, survey, settings)

    return compose


def _count_segments(text: str) -> int:
    from ivr.sms_text import count_segments

    return count_segments(text).segments


def _fail(problems: list[str]) -> click.ClickException:
    return click.ClickException("\n  ".join(["invalid campaign:", *problems]))


@click.group()
def campaign() -> None:
    """Create, list, pause, resume and archive campaigns."""


@campaign.command("apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def campaign_apply(ctx: Context, path: Path) -> None:
    """Create or update (by name) a campaign from a TOML file (see campaign.example.toml)."""
    from ivr.script import load_script
    from scheduler.campaigns import CampaignError, apply_campaign, department_names, read_definition_file

    with ctx.sessions() as session:
        try:
            definition = read_definition_file(
                path,
                departments=department_names(session),
                segment_counter=_count_segments,
                script_loader=load_script,
                org=ctx.settings.app.org,
            )
        except CampaignError as exc:
            raise _fail(exc.problems) from exc
        row, created = apply_campaign(session, definition, utcnow())
        session.commit()
        click.echo(f"{'created' if created else 'updated'} campaign {row.name!r} (status {row.status})")


@campaign.command("list")
@click.pass_obj
def campaign_list(ctx: Context) -> None:
    """List campaigns with their surveys by state and skipped items by reason."""
    from scheduler.campaigns import campaign_summaries

    with ctx.sessions() as session:
        summaries = campaign_summaries(session)
    if not summaries:
        click.echo("no campaigns")
        return
    states = [state.value for state in SurveyState]
    click.echo(f"{'campaign':<30}{'status':<10}" + "".join(f"{s:>13}" for s in states) + f"{'skipped':>10}")
    for summary in summaries:
        counts = "".join(f"{summary.surveys_by_state.get(s, 0):>13}" for s in states)
        skipped = sum(summary.skipped_by_reason.values())
        click.echo(f"{summary.name:<30}{summary.status:<10}{counts}{skipped:>10}")
        for reason, count in sorted(summary.skipped_by_reason.items()):
            click.echo(f"    skipped {count}: {reason}")


def _status_command(operation: str) -> click.Command:
    @click.argument("name")
    @click.pass_obj
    def command(ctx: Context, name: str) -> None:
        from scheduler.campaigns import CampaignError, change_status

        with ctx.sessions() as session:
            try:
                row = change_status(session, name, operation, utcnow())
            except CampaignError as exc:
                raise click.ClickException(str(exc)) from exc
            session.commit()
            click.echo(f"campaign {row.name!r} is {row.status}")

    command.__doc__ = f"{operation.capitalize()} a campaign by name."
    return campaign.command(operation)(command)


for _operation in ("pause", "resume", "archive"):
    _status_command(_operation)


def _environment(ctx: Context) -> Any:
    from models import migrate
    from scheduler.jobs import SchedulerEnv

    if not migrate.is_at_head(ctx.engine):
        raise click.ClickException("the database schema is not current: run `returnvisit init` first")
    settings = ctx.settings
    return SchedulerEnv(
        sessions=ctx.sessions,
        settings=settings,
        gateway=make_gateway(settings),
        compose_sms=make_compose_sms(settings),
    )


@click.group(invoke_without_command=True)
@click.option("--once", is_flag=True, help="Run one tick of every job, print the counts, exit.")
@click.pass_context
def scheduler(click_ctx: click.Context, once: bool) -> None:
    """Run the scheduler: pick, dispatch, recover leases and expire surveys every tick."""
    if click_ctx.invoked_subcommand is not None:
        return
    from scheduler.jobs import build_scheduler, release_scheduler_lock, run_once

    env = _environment(click_ctx.obj)
    try:
        if once:
            click.echo(json.dumps(run_once(env), ensure_ascii=False, sort_keys=True))
            return
        runner = build_scheduler(env)
        signal.signal(signal.SIGTERM, lambda *_: runner.shutdown(wait=False))
        click.echo(
            f"scheduler {env.owner} running every {env.settings.scheduler.tick_seconds} s "
            f"(gateway {env.gateway.name}); Ctrl-C stops"
        )
        try:
            runner.start()
        except (KeyboardInterrupt, SystemExit):
            runner.shutdown(wait=False)
    finally:
        release_scheduler_lock(env)


@scheduler.command("plan")
@click.option("--at", "at_text", help="Plan as of this ISO time (default: now; naive means local time).")
@click.pass_obj
def scheduler_plan(ctx: Context, at_text: str | None) -> None:
    """Print what would be picked and when attempts are due; contacts no one, writes nothing."""
    from scheduler.picking import pick

    settings = ctx.settings
    at = parse_at(at_text, settings)
    with ctx.sessions() as session:
        try:
            report = pick(session, settings, at)
            session.flush()
            _print_plan(session, report, at, settings)
        finally:
            session.rollback()


def parse_at(text: str | None, settings: Settings) -> datetime:
    """Return the --at option's time in UTC (naive times are in the site's zone), or now."""
    if not text:
        return utcnow()
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO time", param_hint="--at") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=settings.app.tz)
    return value.astimezone(UTC)


def _print_plan(session: Session, report: Any, at: datetime, settings: Settings) -> None:
    tz = settings.app.tz
    click.echo(f"plan at {at.astimezone(tz).isoformat(timespec='minutes')} ({settings.app.timezone})")
    if report.busy:
        click.echo("another scheduler is picking right now; try again")
    per_campaign: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for (name, dept), count in report.picked.items():
        per_campaign[name][dept]["would pick"] += count
    for (name, dept, reason), count in report.skipped.items():
        per_campaign[name][dept][f"skip {reason}"] += count
    if not per_campaign:
        click.echo("nothing new to pick")
    for name in sorted(per_campaign):
        click.echo(f"campaign {name}:")
        for dept in sorted(per_campaign[name]):
            counts = per_campaign[name][dept]
            ordered = sorted(counts.items(), key=lambda kv: (kv[0] != "would pick", kv[0]))
            details = ", ".join(f"{k} {v}" for k, v in ordered)
            click.echo(f"  {dept}: {details}")
    rows = session.execute(
        select(Campaign.name, Survey.next_attempt_at)
        .join(Campaign, Campaign.id == Survey.campaign_id)
        .where(Survey.state == SurveyState.SCHEDULED, Survey.next_attempt_at.is_not(None))
    )
    due: dict[str, Counter[str]] = defaultdict(Counter)
    for name, next_at in rows:
        assert next_at is not None
        key = "due now" if next_at <= at else next_at.astimezone(tz).strftime("%Y-%m-%d %H:00")
        due[name][key] += 1
    click.echo("next attempts:" if due else "no attempts scheduled")
    for name in sorted(due):
        slots = sorted(due[name].items(), key=lambda kv: (kv[0] != "due now", kv[0]))
        shown = ", ".join(f"{when}: {count}" for when, count in slots[:8])
        more = f", ... ({len(slots) - 8} more hours)" if len(slots) > 8 else ""
        click.echo(f"  {name}: {shown}{more}")
