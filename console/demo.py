"""`make demo`: the main job on the embedded default (SQLite, simulated phones)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from console.demo_data import write_items
from console.import_files import run_import
from models import migrate
from models.db import make_engine, make_sessionmaker
from models.intake import IntakeOptions
from models.settings import Settings


def run_demo(
    settings: Settings,
    *,
    count: int,
    port: int,
    serve: bool,
    echo: Callable[[str], None],
    workdir: Path = Path("var"),
) -> None:
    """Initialise the database, import generated items and serve the webhook app."""
    engine = make_engine(settings.database.url)
    migrate.upgrade(engine)
    echo(f"database ready: {engine.url.render_as_string(hide_password=True)}")
    workdir.mkdir(parents=True, exist_ok=True)
    items_path = workdir / "demo-items.csv"
    written = write_items(items_path, count, now=datetime.now(UTC))
    echo(f"generated {written} demo service items in {items_path}")
    summary = run_import(
        make_sessionmaker(engine),
        items_path,
        options=IntakeOptions(
            tz=settings.app.tz,
            region=settings.phones.default_region,
            area_code=settings.phones.default_area_code or None,
            auto_create_departments=True,
        ),
        columns=settings.intake.columns,
        source="demo",
    ).as_dict()
    echo(
        f"imported: {summary['new']} new, {summary['updated']} updated, "
        f"{summary['unchanged']} unchanged, {summary['skipped']} skipped "
        f"{summary['skipped_by_reason']}"
    )
    engine.dispose()
    if not serve:
        return
    from ivr.app import create_app

    echo(f"webhook app and intake API on http://127.0.0.1:{port}/ (Ctrl-C stops)")
    echo(f"  OpenAPI document: http://127.0.0.1:{port}/api/v1/openapi.json")
    create_app(settings).run(host="127.0.0.1", port=port, threaded=True)
