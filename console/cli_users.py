"""`returnvisit users add|list|disable` and `returnvisit console` (serve the staff console).

Registered in console/cli.py with `main.add_command(users)` and `main.add_command(console)`.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from sqlalchemy import select

from console.cli import Context, pass_ctx


@click.group()
def users() -> None:
    """Add, list and disable staff accounts of the console."""


def _read_password(password_file: Any) -> str:
    if password_file is not None:
        return str(password_file.readline().rstrip("\r\n"))
    if sys.stdin.isatty():
        return str(click.prompt("password", hide_input=True, confirmation_prompt=True))
    raise click.UsageError("give --password-file (no terminal to prompt on)")


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "supervisor", "officer"]), required=True)
@click.option("--department", "department_code", help="Department code (required for an officer).")
@click.option("--password-file", type=click.File("r"), help="File whose first line is the password.")
@pass_ctx
def users_add(
    ctx: Context, username: str, role: str, department_code: str | None, password_file: Any
) -> None:
    """Create a staff user (the password is hashed; never given on the command line)."""
    from console.users import UserError, create_user

    password = _read_password(password_file)
    with ctx.sessions() as session:
        try:
            user = create_user(session, username, password, role, department_code)
        except UserError as exc:
            raise click.ClickException(str(exc)) from exc
        session.commit()
        click.echo(f"created {user.role} {user.username!r}")


@users.command("list")
@pass_ctx
def users_list(ctx: Context) -> None:
    """List the staff users with role, department and whether they can log in."""
    from models.departments import Department
    from models.staff import StaffUser

    with ctx.sessions() as session:
        rows = session.execute(
            select(StaffUser, Department.code)
            .outerjoin(Department, Department.id == StaffUser.department_id)
            .order_by(StaffUser.username)
        ).all()
        if not rows:
            click.echo("no users (create one with `returnvisit users add NAME --role admin`)")
        for user, code in rows:
            state = "active" if user.active else "disabled"
            if user.locked_until is not None:
                state += f", locked until {user.locked_until:%Y-%m-%d %H:%M} UTC"
            click.echo(f"{user.username}\t{user.role}\t{code or '-'}\t{state}")


@users.command("disable")
@click.argument("username")
@pass_ctx
def users_disable(ctx: Context, username: str) -> None:
    """Disable a staff user: they cannot log in, and their open sessions end."""
    from console.web.audit import record
    from models.staff import StaffUser

    with ctx.sessions() as session:
        user = session.scalars(select(StaffUser).where(StaffUser.username == username)).first()
        if user is None:
            raise click.ClickException(f"no user named {username!r}")
        user.active = False
        record(session, "cli", "user_disabled", "staff_user", user.id, username=username)
        session.commit()
        click.echo(f"disabled {username!r}")


@click.command("console")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5001, show_default=True, type=int)
@pass_ctx
def console(ctx: Context, host: str, port: int) -> None:
    """Serve the staff console (internal: do not expose it to the internet)."""
    from console.web import create_console_app

    app = create_console_app(ctx.settings, session_factory=ctx.sessions)
    click.echo(f"staff console on http://{host}:{port}/")
    app.run(host=host, port=port, threaded=True)
