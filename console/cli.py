"""The `returnvisit` command line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.intake import IntakeOptions
from models.items import ServiceItem
from models.logs import setup_logging
from models.settings import ConfigError, Settings, load_settings


@dataclass
class Context:
    """What every command needs, built on first use (nothing at import time)."""

    config_path: str | None
    _settings: Settings | None = None
    _engine: Engine | None = None
    _sessions: sessionmaker[Session] | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_path)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from sqlalchemy.exc import ArgumentError, NoSuchModuleError

            from models.db import make_engine

            try:
                self._engine = make_engine(self.settings.database.url, echo=self.settings.database.echo)
            except (ArgumentError, NoSuchModuleError, ValueError) as exc:  # ValueError: a port not a number
                raise click.ClickException(f"database.url: not a usable database URL ({exc})") from None
            except OSError as exc:  # the SQLite file's folder cannot be made
                raise click.ClickException(f"cannot open the database {_safe_url(self)}: {exc}") from None
        return self._engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions on a database whose schema is current (else: run `returnvisit init` first)."""
        if self._sessions is None:
            from sqlalchemy.exc import OperationalError

            from models import migrate
            from models.db import make_sessionmaker

            try:
                current = migrate.is_at_head(self.engine)
            except OperationalError as exc:  # a file that cannot be opened, a server not answering
                message = f"cannot open the database {_safe_url(self)}: {exc.orig}"
                raise click.ClickException(message) from None
            if not current:
                raise click.ClickException(
                    f"the database {_safe_url(self)} has no current schema: run `returnvisit init` first"
                )
            self._sessions = make_sessionmaker(self.engine)
        return self._sessions

    def close(self) -> None:
        """Release the database connections this command opened."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.option(
    "--config",
    "config_path",
    envvar="RETURNVISIT_CONFIG",
    type=click.Path(dir_okay=False),
    help="Site configuration file (default: $RETURNVISIT_CONFIG).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """returnvisit: telephone and SMS return visits for government service centres."""
    setup_logging(logging.DEBUG if verbose else logging.INFO)  # JSON off a terminal, phones masked
    ctx.obj = Context(config_path)
    ctx.call_on_close(ctx.obj.close)


@main.command()
@click.option("--admin", "admin_name", help="Create this admin user if it does not exist.")
@click.option(
    "--password-file",
    type=click.File("r"),
    help="File holding the admin's password (first line). Without it, prompt on a terminal.",
)
@pass_ctx
def init(ctx: Context, admin_name: str | None, password_file: Any) -> None:
    """Create or upgrade the database schema, and optionally the first admin user."""
    from sqlalchemy import select

    from console.users import UserError, create_user
    from models import migrate
    from models.staff import Role, StaffUser

    migrate.upgrade(ctx.engine)
    click.echo(f"schema at revision {migrate.current_revision(ctx.engine)} ({_safe_url(ctx)})")
    if not admin_name:
        return
    with ctx.sessions() as session:
        if session.scalars(select(StaffUser).where(StaffUser.username == admin_name)).first():
            click.echo(f"admin user {admin_name!r} already exists")
            return
        if password_file is not None:
            password = password_file.readline().rstrip("\r\n")
        elif sys.stdin.isatty():
            password = click.prompt("password", hide_input=True, confirmation_prompt=True)
        else:
            raise click.UsageError("give --password-file (no terminal to prompt on)")
        try:
            create_user(session, admin_name, password, Role.ADMIN)
        except UserError as exc:
            raise click.ClickException(str(exc)) from exc
        session.commit()
    click.echo(f"created admin user {admin_name!r}")


def _safe_url(ctx: Context) -> str:
    from sqlalchemy.engine import make_url

    return make_url(ctx.settings.database.url).render_as_string(hide_password=True)


def at_most(limit: int) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """A click callback refusing an option value longer than `limit`, the column that stores it.

    PostgreSQL refuses a longer value (SQLite would store it); click's message names the option.
    """

    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value is not None and len(value) > limit:
            raise click.BadParameter(f"longer than {limit} characters")
        return value

    return check


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--source",
    callback=at_most(ServiceItem.__table__.c.source.type.length),
    help="Source system name (default: intake.default_source).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "xlsx", "jsonl"]), help="Default: from the suffix."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def import_(ctx: Context, path: Path, source: str | None, fmt: str | None, as_json: bool) -> None:
    """Import completed service items from a CSV, XLSX or JSON Lines file."""
    from console.import_files import ImportFileError, run_import
    from models.intake import RowStatus

    settings = ctx.settings
    options = intake_options(settings)
    errors = 0

    def report(line: int, ext: str | None, status: RowStatus, reason: str | None) -> None:
        nonlocal errors
        if status == RowStatus.ERROR:
            errors += 1
            from tqdm import tqdm

            tqdm.write(f"{path.name} line {line}: {reason}", file=sys.stderr)

    try:
        summary = run_import(
            ctx.sessions,
            path,
            options=options,
            columns=settings.intake.columns,
            source=source or settings.intake.default_source,
            fmt=fmt,
            on_result=report,
            progress=sys.stderr.isatty() and not as_json,
        )
    except ImportFileError as exc:
        raise click.ClickException(str(exc)) from exc
    data = summary.as_dict()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    click.echo(
        f"read {data['read']}, new {data['new']}, updated {data['updated']}, "
        f"unchanged {data['unchanged']}, skipped {data['skipped']}"
    )
    for reason, count in data["skipped_by_reason"].items():
        click.echo(f"  skipped {count}: {reason}")


def intake_options(settings: Settings) -> IntakeOptions:
    """Return the intake options the settings describe."""
    return IntakeOptions(
        tz=settings.app.tz,
        region=settings.phones.default_region,
        area_code=settings.phones.default_area_code or None,
        auto_create_departments=settings.intake.auto_create_departments,
    )


@main.command("demo-data")
@click.option("--items", "count", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--seed", type=int, default=2026, show_default=True)
def demo_data(count: int, out: Path, seed: int) -> None:
    """Generate a realistic county service centre's completed items as an import file."""
    from console.demo_data import FORMATS, write_items

    if out.suffix.lstrip(".").lower() not in FORMATS:
        raise click.BadParameter(f"{out.name}: end the name with .{', .'.join(FORMATS)}", param_hint="--out")
    if not out.parent.is_dir():
        raise click.BadParameter(f"directory {out.parent} does not exist", param_hint="--out")
    written = write_items(out, count, now=datetime.now(UTC), seed=seed, progress=sys.stderr.isatty())
    click.echo(f"wrote {written} items to {out}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@pass_ctx
def serve(ctx: Context, host: str, port: int) -> None:
    """Serve the public webhook app (and intake API) for local use."""
    from ivr.app import create_app

    app = create_app(ctx.settings)
    click.echo(f"webhook app on http://{host}:{port}/ (public base URL {ctx.settings.app.public_base_url})")
    app.run(host=host, port=port, threaded=True)


@main.command()
@click.option("--items", "count", type=click.IntRange(min=1), default=600, show_default=True)
@click.option("--port", default=5000, show_default=True, type=int, help="Webhook port (console: +1).")
@click.option("--no-serve", is_flag=True, help="Set up and import, then exit.")
@click.option("--ticks", type=click.IntRange(min=1), help="Stop after this many scheduler ticks.")
@pass_ctx
def demo(ctx: Context, count: int, port: int, no_serve: bool, ticks: int | None) -> None:
    """Run the whole loop with simulated phones on database.url, SQLite by default (Ctrl-C stops)."""
    from console.demo import run_demo

    run_demo(ctx.settings, count=count, port=port, serve=not no_serve, echo=click.echo, ticks=ticks)


@main.command()
@click.option("--survey", "survey_id", type=int, help="Call for this survey (a new attempt).")
@click.option("--item", "item_id", type=int, help="Call about this service item (a try-out survey).")
@click.option("--language", type=click.Choice(["zh-CN", "en-US"]), help="Language of a try-out survey.")
@pass_ctx
def call(ctx: Context, survey_id: int | None, item_id: int | None, language: str | None) -> None:
    """Play a survey call in the terminal: hear the prompts, type the keys (Enter alone = silence)."""
    from console.call import CallError, play_call, prepare_call
    from ivr.simulator import TerminalPersona
    from models.phones import mask_phone
    from models.survey_ops import answers_of

    if (survey_id is None) == (item_id is None):
        raise click.UsageError("give exactly one of --survey ID or --item ID")
    now = datetime.now(UTC)
    with ctx.sessions() as session:
        try:
            survey, attempt = prepare_call(
                session, ctx.settings, survey_id=survey_id, item_id=item_id, language=language, now=now
            )
        except CallError as exc:
            raise click.ClickException(str(exc)) from exc
        session.commit()
        click.echo(
            f"calling {mask_phone(survey.item.phone_e164)} for survey {survey.id} "
            "(keys: digits, # to finish; Enter alone = silence; h = hang up)"
        )
    record = play_call(ctx.settings, survey, attempt, TerminalPersona())
    with ctx.sessions() as session:
        done = session.get(type(survey), survey.id)
        answers = {q: a.value for q, a in answers_of(session, done).items()} if done else {}
        click.echo(
            f"call ended ({record.status}); survey {survey.id}: "
            f"{done.state if done else '?'} {done.disposition or '' if done else ''} answers {answers}"
        )


def _register_commands() -> None:
    from console.cli_cycle import COMMANDS as cycle_commands
    from console.cli_ops import COMMANDS as ops_commands
    from console.cli_scheduler import campaign, scheduler
    from console.cli_sms import sms
    from console.cli_users import console, users

    main.add_command(users)
    main.add_command(console)
    main.add_command(sms)
    main.add_command(campaign)
    main.add_command(scheduler)
    for command in (*cycle_commands, *ops_commands):
        main.add_command(command)


_register_commands()
