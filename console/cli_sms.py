"""`returnvisit sms PHONE TEXT`: text the webhook app as a citizen would, and print its reply.

The app runs in this process against the configured database; the text is signed as Twilio signs
it, so it takes exactly the path a real reply takes (routing, keywords, the survey engine).
"""

from __future__ import annotations

import click

from console.cli import Context, pass_ctx


@click.command()
@click.argument("phone")
@click.argument("text")
@click.option(
    "--to",
    "to_number",
    help="Our number the text is sent to (default: twilio.sms_from, the number survey texts come from).",
)
@pass_ctx
def sms(ctx: Context, phone: str, text: str, to_number: str | None) -> None:
    """Send TEXT from PHONE to the SMS webhook and print the reply (try an SMS survey without a phone)."""
    from ivr.app import create_app
    from ivr.simulator import FlaskTransport, PhoneNetwork
    from ivr.urls import sms_inbound_url
    from models.phones import mask_phone, normalize_phone

    settings = ctx.settings
    # Twilio always gives From in E.164; accept a number as staff would type it.
    sender = normalize_phone(phone, region=settings.phones.default_region).e164 or phone
    ours = to_number or settings.twilio.sms_from
    app = create_app(settings, session_factory=ctx.sessions)
    network = PhoneNetwork(FlaskTransport(app), settings.twilio.auth_token)
    status, replies = network.deliver_sms(sender, ours, text, sms_inbound_url(settings.app.public_base_url))
    if status != 200:
        raise click.ClickException(f"the SMS webhook answered HTTP {status}")
    click.echo(f"{mask_phone(sender)} -> {ours}: {text}")
    for reply in replies:
        click.echo(f"reply: {reply}")
    if not replies:
        click.echo("(no reply)")
