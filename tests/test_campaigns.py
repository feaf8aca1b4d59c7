"""Campaign definitions: validation naming every wrong field, apply by name, status operations, CLI."""

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from scheduler_fixtures import add_item
from sqlalchemy import func, select

from console.cli import Context
from console.cli_scheduler import campaign, scheduler
from ivr.script import load_script
from ivr.sms_text import count_segments
from models import migrate
from models.campaigns import Campaign, CampaignStatus
from models.db import make_engine, make_sessionmaker
from models.departments import Department
from models.picks import PickSkip
from models.surveys import Survey
from scheduler.campaigns import (
    CampaignDefinition,
    CampaignError,
    apply_campaign,
    campaign_summaries,
    change_status,
    parse_definition,
    read_definition_file,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "campaign.example.toml"


def segments(text):
    return count_segments(text).segments


def problems_of(data, **options):
    with pytest.raises(CampaignError) as caught:
        parse_definition(data, **options)
    return caught.value.problems


def test_validation_names_every_wrong_field():
    problems = problems_of(
        {
            "name": "bad",
            "departments": ["SWJ", "NOPE"],
            "quota": -1,
            "quota_by_department": {"SWJ": 5, "GHOST": 1},
            "sampling_rate": 1.5,
            "channels": ["voice", "fax"],
            "windows": ["09:00-12:00", "20:00-14:00"],
            "delay": "soon",
            "retry": {"voice": "30m 2x"},
            "timezone": "Mars/Olympus",
            "calls_per_second": 0,
            "sms_text": {"zh-CN": "您好" * 120, "en-US": "Dear {citizen}"},
            "colour": "blue",
        },
        departments={"SWJ": "税务局"},
        segment_counter=segments,
        org="示范县政务服务中心",
    )
    by_key = {problem.split(":", 1)[0]: problem for problem in problems}
    assert set(by_key) == {
        "departments",
        "quota",
        "quota_by_department",
        "sampling_rate",
        "channels[1]",
        "windows[1]",
        "delay",
        "retry.voice",
        "timezone",
        "calls_per_second",
        "sms_text.zh-CN",
        "sms_text.en-US",
        "colour",
    }
    assert "NOPE" in by_key["departments"] and "SWJ" not in by_key["departments"]
    assert "GHOST" in by_key["quota_by_department"]
    assert "ends before it starts" in by_key["windows[1]"]
    assert "segments" in by_key["sms_text.zh-CN"] and "limit of 2" in by_key["sms_text.zh-CN"]
    assert "citizen" in by_key["sms_text.en-US"]


def test_a_nul_character_anywhere_is_refused_naming_its_key():
    # PostgreSQL text cannot hold a NUL (SQLite stores it); TOML writes one as "\u0000".
    problems = problems_of(
        {
            "name": "Q4\x00",
            "seed": "s\x00",
            "matters": ["契税申报", "企业\x00开办"],
            "quota_by_department": {"S\x00": 1},
            "sms_text": {"zh-CN": "您好\x00{matter}"},
            "quota": -1,
        }
    )
    assert problems == [
        "name: contains a NUL character",
        "seed: contains a NUL character",
        "matters[1]: contains a NUL character",
        "quota_by_department.S\\u0000: contains a NUL character",
        "sms_text.zh-CN: contains a NUL character",
        "quota: Input should be greater than or equal to 0",
    ]
    assert problems_of({"name": "Q4\x00"}) == ["name: contains a NUL character"]


def test_cross_field_checks_name_their_keys():
    problems = problems_of({"name": "x", "delay": "40d", "channels": ["voice"], "retry": {"sms": "1h"}})
    assert problems == [
        "max_age: 30d must be longer than delay 40d",
        "retry.sms: channel sms is not in channels",
    ]


def test_defaults_and_seed_derived_from_name():
    first = parse_definition({"name": "季度回访"})
    assert first.channels == ["voice", "sms"] and first.windows == ["09:00-12:00", "14:00-20:00"]
    assert first.retry_intervals("voice") == "30m 2h 1d" and first.retry_intervals("sms") == ""
    assert first.seed == parse_definition({"name": "季度回访"}).seed
    assert first.seed != parse_definition({"name": "other"}).seed
    assert parse_definition({"name": "x", "seed": "fixed"}).seed == "fixed"


def test_example_file_is_valid_and_documents_every_key():
    definition = read_definition_file(
        EXAMPLE, departments={}, segment_counter=segments, org="示范县政务服务中心"
    )
    assert definition.status == "active"
    text = EXAMPLE.read_text(encoding="utf-8")
    for key in CampaignDefinition.model_fields:
        assert f"\n{key} =" in text or f"\n# {key} =" in text or f"[{key}]" in text, key


def test_script_path_is_resolved_against_the_file(tmp_path):
    (tmp_path / "mine.toml").write_text("# a script\n", encoding="utf-8")
    (tmp_path / "c.toml").write_text('name = "x"\nscript = "mine.toml"\n', encoding="utf-8")
    assert read_definition_file(tmp_path / "c.toml").script == str((tmp_path / "mine.toml").resolve())
    (tmp_path / "d.toml").write_text('name = "x"\nscript = "missing.toml"\n', encoding="utf-8")
    with pytest.raises(CampaignError, match="script: script file .*missing.toml does not exist"):
        read_definition_file(tmp_path / "d.toml")


def test_a_script_file_must_load_as_a_script(tmp_path):
    default = str(Path(__file__).resolve().parent.parent / "ivr" / "scripts" / "default.toml")
    assert parse_definition({"name": "x", "script": default}, script_loader=load_script).script == default
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    with pytest.raises(CampaignError, match=r"^script: script file .*passwd is not a usable script: "):
        parse_definition({"name": "x", "script": str(tmp_path / "passwd")}, script_loader=load_script)


def test_placeholders_take_no_format_spec_or_conversion():
    # "{org:>99999999999}" would build a text of a hundred gigabytes when the SMS is composed.
    problems = problems_of(
        {"name": "x", "sms_text": {"zh-CN": "{org!r:>99999999999}", "en-US": "{matter} {date:%Y}{org!s}"}},
        segment_counter=segments,
    )
    assert problems == [
        "sms_text.zh-CN: placeholder(s) org may not have a format or conversion (write {org})",
        "sms_text.en-US: placeholder(s) date, org may not have a format or conversion (write {date} {org})",
    ]


def test_apply_twice_updates_instead_of_duplicating(session, now):
    first, created = apply_campaign(session, parse_definition({"name": "Q4", "status": "active"}), now)
    assert created and first.status == CampaignStatus.ACTIVE
    change_status(session, "Q4", "pause", now)
    second, created_again = apply_campaign(
        session, parse_definition({"name": "Q4", "sampling_rate": 0.25}), now
    )
    assert not created_again and second.id == first.id
    assert session.scalar(select(func.count()).select_from(Campaign).where(Campaign.name == "Q4")) == 1
    assert second.config["sampling_rate"] == 0.25
    assert second.status == CampaignStatus.PAUSED  # a file without status keeps it
    third, _ = apply_campaign(session, parse_definition({"name": "Q4", "status": "active"}), now)
    assert third.status == CampaignStatus.ACTIVE


def test_pause_resume_archive(session, now):
    apply_campaign(session, parse_definition({"name": "Q4"}), now)
    assert change_status(session, "Q4", "resume", now).status == CampaignStatus.ACTIVE
    assert change_status(session, "Q4", "pause", now).status == CampaignStatus.PAUSED
    assert change_status(session, "Q4", "archive", now).status == CampaignStatus.ARCHIVED
    with pytest.raises(CampaignError, match="cannot resume campaign 'Q4': it is archived"):
        change_status(session, "Q4", "resume", now)
    with pytest.raises(CampaignError, match="no campaign named 'nope'"):
        change_status(session, "nope", "pause", now)


def test_summaries_count_surveys_by_state_and_skips_by_reason(session, now, create_department):
    dept = create_department()
    row, _ = apply_campaign(session, parse_definition({"name": "Q4"}), now)
    item = add_item(session, dept, now)
    other = add_item(session, dept, now)
    session.add(
        Survey(
            campaign_id=row.id,
            item_id=item.id,
            token="t" * 32,
            department_id=dept.id,
            quarter="2026Q4",
            language="zh-CN",
            channel="voice",
            state="done",
        )
    )
    session.add(PickSkip(campaign_id=row.id, item_id=other.id, department_id=dept.id, reason="opted_out"))
    session.flush()
    [summary] = [s for s in campaign_summaries(session) if s.name == "Q4"]
    assert summary.surveys_by_state == {"done": 1}
    assert summary.skipped_by_reason == {"opted_out": 1}


@pytest.fixture
def cli(fresh_db_url):
    """Invoke the campaign and scheduler commands as `returnvisit` would, on a migrated database."""
    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    with make_sessionmaker(engine)() as session:
        session.add(Department(code="SWJ", name="国家税务总局示范县税务局"))
        session.commit()
    engine.dispose()

    @click.group()
    @click.pass_context
    def root(ctx):
        ctx.obj = Context(None)
        ctx.call_on_close(ctx.obj.close)

    root.add_command(campaign)
    root.add_command(scheduler)

    def invoke(*args):
        result = CliRunner().invoke(root, list(args), env={"RETURNVISIT_DATABASE_URL": fresh_db_url})
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


def test_cli_apply_list_pause_resume_archive(cli, tmp_path):
    path = tmp_path / "q4.toml"
    path.write_text('name = "Q4 回访"\nstatus = "active"\ndepartments = ["SWJ"]\n', encoding="utf-8")
    assert cli("campaign", "apply", str(path)).output == "created campaign 'Q4 回访' (status active)\n"
    path.write_text('name = "Q4 回访"\ndepartments = ["SWJ"]\nsampling_rate = 0.5\n', encoding="utf-8")
    assert cli("campaign", "apply", str(path)).output == "updated campaign 'Q4 回访' (status active)\n"
    listing = cli("campaign", "list")
    assert listing.exit_code == 0 and "Q4 回访" in listing.output and "scheduled" in listing.output
    assert cli("campaign", "pause", "Q4 回访").output == "campaign 'Q4 回访' is paused\n"
    assert cli("campaign", "resume", "Q4 回访").output == "campaign 'Q4 回访' is active\n"
    assert cli("campaign", "archive", "Q4 回访").output == "campaign 'Q4 回访' is archived\n"
    refused = cli("campaign", "resume", "Q4 回访")
    assert refused.exit_code == 1 and "it is archived" in refused.output


def test_cli_apply_refuses_a_nul_character_and_stores_nothing(cli, tmp_path):
    path = tmp_path / "nul.toml"
    path.write_text('name = "Q4\\u0000"\nmatters = ["契税\\u0000申报"]\n', encoding="utf-8")
    result = cli("campaign", "apply", str(path))
    assert result.exit_code == 1
    assert "name: contains a NUL character" in result.output
    assert "matters[0]: contains a NUL character" in result.output
    assert "no campaigns" in cli("campaign", "list").output


def test_cli_apply_lists_every_problem(cli, tmp_path):
    path = tmp_path / "bad.toml"
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    path.write_text(
        'name = "bad"\ndepartments = ["XXX"]\nquota = -3\nwindows = ["12:00-09:00"]\nscript = "passwd"\n',
        encoding="utf-8",
    )
    result = cli("campaign", "apply", str(path))
    assert result.exit_code == 1
    for key in ("departments: unknown department code(s): XXX", "quota:", "windows[0]:",
                "passwd is not a usable script"):
        assert key in result.output
