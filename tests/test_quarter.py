"""Closing a quarter: a frozen snapshot, a refused second close, late answers that change nothing."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from test_metrics import add_survey, dataset  # noqa: F401 - fixtures

from models.metrics import quarter_figures
from models.quarter_ops import (
    QuarterError,
    close_quarter,
    figures_for,
    is_quarter_closed,
    live_figures,
    mark_late_answers,
    snapshots,
)
from models.quarters import QuarterClose, QuarterSnapshot
from models.survey_ops import record_answer
from models.surveys import Answer, Survey

AFTER_Q3 = datetime(2026, 10, 8, 2, 0, tzinfo=UTC)


def test_closing_freezes_a_snapshot_per_department(session, settings, dataset):  # noqa: F811
    closing = close_quarter(session, "2026q3", "boss", settings, AFTER_Q3)
    assert (closing.quarter, closing.closed_by, closing.closed_at) == ("2026Q3", "boss", AFTER_Q3)
    assert is_quarter_closed(session, "2026Q3") and not is_quarter_closed(session, "2026Q4")
    rows = session.scalars(select(QuarterSnapshot).where(QuarterSnapshot.quarter == "2026Q3")).all()
    assert len(rows) == 3
    published = {f.department_code: f for f in snapshots(session, "2026Q3")}
    a = published["A-SWJ"]
    assert (a.rated, a.satisfied, a.completes) == (6, 4, 5)
    assert a.satisfaction_index == pytest.approx(350 / 6)
    assert a.aapor.rr1 == pytest.approx(5 / 12)
    assert a.previous_satisfaction_rate == 0.5
    # The default minimum of 30 ratings ranks nobody in this small dataset.
    assert {f.rank for f in published.values()} == {None}


def test_a_second_close_is_refused(session, settings, dataset):  # noqa: F811
    close_quarter(session, "2026Q3", "boss", settings, AFTER_Q3)
    with pytest.raises(QuarterError, match=r"2026Q3 was already closed on 2026-10-08 10:00 by boss"):
        close_quarter(session, "2026Q3", "other", settings, AFTER_Q3)
    assert len(session.scalars(select(QuarterClose)).all()) == 1


def test_a_quarter_closes_only_after_its_last_day_in_the_configured_time_zone(session, settings):
    # 2026-03-31 23:30 in Shanghai is still the first quarter.
    with pytest.raises(QuarterError, match="2026Q1 has not ended yet"):
        close_quarter(session, "2026Q1", "boss", settings, datetime(2026, 3, 31, 15, 30, tzinfo=UTC))
    close_quarter(session, "2026Q1", "boss", settings, datetime(2026, 3, 31, 16, 0, tzinfo=UTC))


def test_a_bad_quarter_name_is_refused(session, settings):
    with pytest.raises(ValueError, match="not of the form"):
        close_quarter(session, "2026-3", "boss", settings, AFTER_Q3)


def test_a_late_answer_never_changes_the_published_figures(session, settings, dataset, add_survey):  # noqa: F811
    a, _, _ = dataset
    waiting = add_survey(a, None)  # an SMS survey whose reply comes after the close
    close_quarter(session, "2026Q3", "boss", settings, AFTER_Q3)
    before = {f.department_code: f.as_dict() for f in snapshots(session, "2026Q3")}

    arrived = datetime(2026, 10, 9, 3, 0, tzinfo=UTC)
    record_answer(session, waiting, "rating", "very_dissatisfied", channel="sms", now=arrived)
    assert mark_late_answers(session, waiting) == 1
    session.flush()

    assert {f.department_code: f.as_dict() for f in snapshots(session, "2026Q3")} == before
    published, closing = figures_for(session, "2026Q3", settings, arrived)
    assert closing is not None and {f.department_code: f.as_dict() for f in published} == before
    live = {f.department_code: f for f in live_figures(session, "2026Q3", settings, arrived)}
    assert live["A-SWJ"].grades == before["A-SWJ"]["grades"]
    assert live["A-SWJ"].late_answers == 2  # shown as late

    from console.reports import build_report
    from console.reports.html import render_html

    report = build_report(session, "2026Q3", settings, arrived)
    assert report.late_since_close == {"A-SWJ": 2}
    assert {f.department_code: f.late_answers for f in report.figures}["A-SWJ"] == 2  # its tables' column
    assert "2 late answer(s) kept, not in these figures" in render_html(report, 30)


def test_answers_of_an_open_quarter_are_not_late(session, settings, dataset, add_survey):  # noqa: F811
    a, _, _ = dataset
    survey = add_survey(a, None, quarter="2026Q4")
    record_answer(session, survey, "rating", "satisfied", channel="voice", now=AFTER_Q3)
    assert mark_late_answers(session, survey) == 0
    assert not is_quarter_closed(session, "2026Q4")


def test_answers_stored_before_the_close_stay_on_time(session, settings, dataset, add_survey):  # noqa: F811
    a, _, _ = dataset
    survey = add_survey(a, None)
    record_answer(session, survey, "rating", "satisfied", channel="voice", now=AFTER_Q3)
    close_quarter(session, "2026Q3", "boss", settings, AFTER_Q3.replace(hour=3))
    assert mark_late_answers(session, survey) == 0


def test_the_next_quarter_compares_with_the_published_figures(session, settings, dataset):  # noqa: F811
    close_quarter(session, "2026Q2", "boss", settings, datetime(2026, 7, 2, tzinfo=UTC))
    # After the close, the satisfied Q2 citizen turns out never to have handled the item.
    satisfied = session.scalars(
        select(Survey).join(Answer, Answer.survey_id == Survey.id).where(
            Survey.quarter == "2026Q2", Answer.question == "rating", Answer.value == "satisfied"
        )
    ).one()
    satisfied.disposition = "not_eligible"
    session.flush()
    figures, closing = figures_for(session, "2026Q3", settings, AFTER_Q3)
    assert closing is None
    assert {f.department_code: f.previous_satisfaction_rate for f in figures}["A-SWJ"] == 0.5
    recomputed = quarter_figures(session, "2026Q3", now=AFTER_Q3, min_ratings_to_rank=30)
    assert {f.department_code: f.previous_satisfaction_rate for f in recomputed}["A-SWJ"] == 0.0
