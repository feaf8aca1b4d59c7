"""Quarterly figures (DESIGN §8) against hand-computed expectations, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete

import models.metrics  # noqa: F401 - declares the covering indexes the migrations create
from models.cases import Case, CaseState
from models.metrics import AaporRates, quarter_figures, trend, wilson_interval
from models.survey_ops import finish_survey
from models.surveys import Answer, Attempt
from scheduler.policy import quarter_of

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 8, 10, 2, 0, tzinfo=UTC)
NOW = datetime(2026, 10, 20, 2, 0, tzinfo=UTC)


@pytest.fixture
def add_survey(session, create_survey, create_campaign):
    """Factory: a survey of a department in a quarter with a disposition, answers and attempts."""
    campaign = create_campaign()

    def make(department, disposition=None, *, quarter="2026Q3", attempts=1, late=(), kind="survey",
             **answers):
        item = _item(department)
        survey, _ = create_survey("voice", campaign=campaign, item=item, quarter=quarter, kind=kind)
        for question, value in answers.items():
            session.add(
                Answer(
                    survey_id=survey.id, question=question, value=value, channel="voice",
                    received_at=AT, late=question in late,
                )
            )
        if attempts == 0:
            session.execute(delete(Attempt).where(Attempt.survey_id == survey.id))
        for number in range(2, attempts + 1):
            session.add(Attempt(survey_id=survey.id, channel="voice", number=number, status="no_answer"))
        if disposition:
            finish_survey(session, survey, disposition, AT)
        session.flush()
        return survey

    items = {}

    def _item(department):
        from models.items import ServiceItem

        items.setdefault(department, 0)
        items[department] += 1
        item = ServiceItem(
            source="t", external_id=f"{department}-{items[department]}", department_id=department.id,
            matter="契税申报", phone_kind="mobile", phone_e164="+8613800138000",
            completed_at=AT - timedelta(days=1),
        )
        session.add(item)
        session.flush()
        return item

    return make


@pytest.fixture
def dataset(session, create_department, add_survey):
    """Three departments in 2026Q3 (and one rating pair in 2026Q2) with known figures."""
    a = create_department(code="A-SWJ", name="税务局")
    b = create_department(code="B-SCJ", name="市场监管局")
    c = create_department(code="C-GAJ", name="公安局")
    # Department A, 2026Q3: 14 surveys.
    add_survey(a, "complete", rating="very_satisfied")
    add_survey(a, "complete", attempts=2, rating="satisfied")
    add_survey(a, "complete", rating="basically_satisfied")
    add_survey(a, "complete", rating="dissatisfied", categories="delay,cold", comment="=HYPERLINK(1)")
    add_survey(a, "partial", rating="very_dissatisfied", categories="delay")
    add_survey(a, "refused")
    add_survey(a, "break_off")
    add_survey(a, "no_answer", attempts=3)
    add_survey(a, "busy")
    add_survey(a, "not_contacted", attempts=0)
    add_survey(a, "failed")
    add_survey(a, "not_eligible", rating="satisfied", eligible="no")  # not a rating
    add_survey(a, None, rating="satisfied")  # still in progress: rated, no final disposition
    add_survey(a, "complete", rating="very_dissatisfied", categories="poor", late={"rating", "categories"})
    add_survey(a, "complete", kind="verification", verification="dissatisfied")  # not a survey
    # Department A, 2026Q2: rate 1/2, index (80 + 30) / 2 = 55.
    add_survey(a, "complete", quarter="2026Q2", rating="satisfied")
    add_survey(a, "complete", quarter="2026Q2", rating="dissatisfied", categories="stuck")
    # Department B: 2 ratings (below the minimum of 3 to be ranked).
    add_survey(b, "complete", rating="satisfied")
    add_survey(b, "complete", rating="very_dissatisfied", categories="shirk,chaotic")
    # Department C: 3 ratings, all very satisfied.
    for _ in range(3):
        add_survey(c, "complete", rating="very_satisfied")
    # Department A's cases of 2026Q3.
    due = datetime(2026, 9, 30, 15, 59, 59, tzinfo=UTC)
    surveys = [add_survey(a, "complete", quarter="2026Q1", rating="dissatisfied") for _ in range(3)]
    for survey, state, answered, result in [
        (surveys[0], CaseState.CLOSED, due - timedelta(days=3), "satisfied"),  # on time, verified
        (surveys[1], CaseState.OPEN, None, None),  # overdue, not answered
        (surveys[2], CaseState.ANSWERED, due + timedelta(days=1), None),  # answered late
    ]:
        session.add(
            Case(
                survey_id=survey.id, department_id=a.id, quarter="2026Q3", grade="dissatisfied",
                categories=[], state=state, opened_at=AT, due_at=due, answered_at=answered,
                verification_result=result,
            )
        )
    session.flush()
    return a, b, c


def figures_by_code(session, quarter="2026Q3", **kwargs):
    kwargs.setdefault("min_ratings_to_rank", 3)
    return {f.department_code: f for f in quarter_figures(session, quarter, now=NOW, **kwargs)}


def test_counts_grades_and_rates_of_a_department(session, dataset):
    a = figures_by_code(session)["A-SWJ"]
    assert (a.surveys, a.finished, a.attempts, a.completes) == (14, 13, 16, 5)
    assert a.grades == {
        "very_satisfied": 1, "satisfied": 2, "basically_satisfied": 1,
        "dissatisfied": 1, "very_dissatisfied": 1,
    }
    assert (a.rated, a.satisfied, a.bad) == (6, 4, 2)
    assert a.satisfaction_rate == pytest.approx(4 / 6)
    assert a.bad_review_rate == pytest.approx(2 / 6)
    # (100 + 2*80 + 60 + 30 + 0) / 6
    assert a.satisfaction_index == pytest.approx(350 / 6)
    # Wilson 95 %, p = 4/6, n = 6, z = 1.96: centre 0.60161, half-width 0.30162.
    assert a.satisfaction_low == pytest.approx(0.29999, abs=1e-4)
    assert a.satisfaction_high == pytest.approx(0.90323, abs=1e-4)
    assert a.categories == {"stuck": 0, "shirk": 0, "delay": 2, "chaotic": 0, "cold": 1, "poor": 0}
    assert a.late_answers == 1


def test_aapor_rates_from_final_dispositions(session, dataset):
    aapor = figures_by_code(session)["A-SWJ"].aapor
    # I 5 (complete), P 1, R 2 (refused, break-off), NC 2 (no answer, busy), UH 1 (not contacted),
    # UO 1 (failed), NE 1; the survey still in progress is not final.
    assert aapor.counts == {"I": 5, "P": 1, "R": 2, "NC": 2, "O": 0, "UH": 1, "UO": 1, "NE": 1}
    assert aapor.rr1 == pytest.approx(5 / 12)
    assert aapor.rr2 == pytest.approx(6 / 12)
    assert aapor.coop1 == pytest.approx(5 / 8)
    assert aapor.ref1 == pytest.approx(2 / 12)
    assert aapor.con1 == pytest.approx(8 / 12)


def test_change_against_the_previous_quarter(session, dataset):
    a = figures_by_code(session)["A-SWJ"]
    assert (a.previous_satisfaction_rate, a.previous_satisfaction_index) == (0.5, 55.0)
    assert a.satisfaction_rate_change == pytest.approx(4 / 6 - 0.5)
    assert a.satisfaction_index_change == pytest.approx(350 / 6 - 55)
    assert figures_by_code(session)["C-GAJ"].satisfaction_rate_change is None


def test_ranking_leaves_out_departments_with_too_few_ratings(session, dataset):
    figures = figures_by_code(session)
    assert (figures["C-GAJ"].rank, figures["A-SWJ"].rank, figures["B-SCJ"].rank) == (1, 2, None)
    everyone = figures_by_code(session, min_ratings_to_rank=1)
    assert (everyone["C-GAJ"].rank, everyone["A-SWJ"].rank, everyone["B-SCJ"].rank) == (1, 2, 3)


def test_case_figures(session, dataset):
    cases = figures_by_code(session)["A-SWJ"].cases
    assert (cases.opened, cases.answered, cases.answered_on_time, cases.overdue) == (3, 2, 1, 2)
    assert (cases.verified_satisfied, cases.closed) == (1, 1)


def test_department_scope(session, dataset):
    a, _, _ = dataset
    only = quarter_figures(session, "2026Q3", now=NOW, min_ratings_to_rank=3, department_ids=[a.id])
    assert [f.department_code for f in only] == ["A-SWJ"]
    assert only[0].department_name == "税务局" and only[0].rated == 6


def test_trend_over_quarters_takes_two_queries(session, dataset, engine):
    from sqlalchemy import event

    a, b, _ = dataset
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        result = trend(session, ["2026Q2", "2026Q3"])
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    # The quarters' survey id ranges, then one statement aggregating every quarter over its range.
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2
    assert set(result[a.id]) == {"2026Q2", "2026Q3"}
    assert result[a.id]["2026Q2"].satisfaction_rate == 0.5
    assert result[a.id]["2026Q3"].satisfaction_index == pytest.approx(350 / 6)
    assert set(result[b.id]) == {"2026Q3"}


def test_figures_round_trip_through_json(session, dataset):
    import json

    from models.metrics import DepartmentFigures

    a = figures_by_code(session)["A-SWJ"]
    again = DepartmentFigures.from_dict(json.loads(json.dumps(a.as_dict())))
    assert again == a


def test_an_item_completed_late_on_march_31_in_shanghai_belongs_to_q1(session, create_department, add_survey):
    dept = create_department(code="Q", name="Q")
    completed = datetime(2026, 3, 31, 23, 30, tzinfo=SHANGHAI)
    after_midnight = datetime(2026, 4, 1, 0, 30, tzinfo=SHANGHAI)  # still March 31 in UTC
    assert quarter_of(completed, SHANGHAI) == "2026Q1"
    assert quarter_of(after_midnight, SHANGHAI) == "2026Q2" and after_midnight.astimezone(UTC).month == 3
    add_survey(dept, "complete", quarter=quarter_of(completed, SHANGHAI), rating="satisfied")
    add_survey(dept, "complete", quarter=quarter_of(after_midnight, SHANGHAI), rating="dissatisfied")
    q1 = quarter_figures(session, "2026Q1", now=NOW, min_ratings_to_rank=1, department_ids=[dept.id])
    q2 = quarter_figures(session, "2026Q2", now=NOW, min_ratings_to_rank=1, department_ids=[dept.id])
    assert q1[0].grades["satisfied"] == 1 and q1[0].rated == 1
    assert q2[0].grades["dissatisfied"] == 1 and q2[0].rated == 1


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(3, 3)
    assert high == 1.0 and low == pytest.approx(0.43850, abs=1e-5)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.27754, abs=1e-5)
    # Exactly 0 and 1 at every n: a CSV must not say 5.55e-17.
    assert all(wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0 for n in range(1, 200))


def test_aapor_rates_without_eligible_cases_are_none():
    rates = AaporRates.from_dispositions({"not_eligible": 4})
    assert rates.counts["NE"] == 4 and rates.rr1 is None and rates.coop1 is None


def _selects_during(engine, run):
    from sqlalchemy import event

    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        result = run()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")], result


def test_one_quarter_reads_its_surveys_in_one_query(session, dataset, engine, create_department):
    for n in range(5):  # more departments add no query
        create_department(code=f"X{n}")
    selects, figures = _selects_during(
        engine, lambda: quarter_figures(session, "2026Q3", now=NOW, min_ratings_to_rank=3, previous={})
    )
    # The quarter's id range, its surveys with their ratings, categories and attempts, its cases, and
    # the departments' names.
    assert len(selects) == 4
    assert sum("FROM surveys" in s for s in selects) == 2 and sum("FROM cases" in s for s in selects) == 1
    assert {f.department_code for f in figures} == {"A-SWJ", "B-SCJ", "C-GAJ"}


def test_quarter_id_bounds_are_the_first_and_last_survey_of_each_quarter(session, dataset):
    from sqlalchemy import func, select

    from models.metrics import quarter_id_bounds
    from models.surveys import Survey

    bounds = quarter_id_bounds(session, ["2026Q2", "2026Q3", "2025Q1"])
    assert set(bounds) == {"2026Q2", "2026Q3"}  # a quarter without surveys has no range
    for quarter, (low, high) in bounds.items():
        of_quarter = (Survey.quarter == quarter, Survey.kind == "survey")
        assert low == session.scalar(select(func.min(Survey.id)).where(*of_quarter))
        assert high == session.scalar(select(func.max(Survey.id)).where(*of_quarter))
    assert quarter_id_bounds(session, []) == {}


def test_a_quarter_with_cases_but_no_surveys(session, dataset):
    a, _, _ = dataset
    session.add(
        Case(
            survey_id=_survey_without_case(session),
            department_id=a.id, quarter="2026Q4", grade="dissatisfied", categories=[],
            state=CaseState.OPEN, opened_at=NOW, due_at=NOW + timedelta(days=20),
        )
    )
    session.flush()
    [only] = quarter_figures(session, "2026Q4", now=NOW, min_ratings_to_rank=1)
    assert (only.department_code, only.surveys, only.rated, only.cases.opened) == ("A-SWJ", 0, 0, 1)
    assert only.satisfaction_rate is None and only.aapor.rr1 is None


def _survey_without_case(session):
    from sqlalchemy import select

    from models.surveys import Survey

    used = set(session.scalars(select(Case.survey_id)))
    return session.scalars(select(Survey.id).where(Survey.id.not_in(used)).order_by(Survey.id)).first()


def test_sqlite_connections_get_a_page_cache_no_memory_map_and_rarer_checkpoints(tmp_path):
    from models.db import (
        SQLITE_CACHE_KIB,
        SQLITE_MMAP_BYTES,
        SQLITE_WAL_AUTOCHECKPOINT_PAGES,
        make_engine,
    )

    engine = make_engine(f"sqlite:///{tmp_path}/cache.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -SQLITE_CACHE_KIB == -65536
        # A map costs the webhooks more than it saves the reports (models/db.py).
        assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == SQLITE_MMAP_BYTES == 0
        # Two writing workers retry an unfinished checkpoint after every commit (models/db.py).
        checkpoint_pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert checkpoint_pages == SQLITE_WAL_AUTOCHECKPOINT_PAGES == 4000
    engine.dispose()


def test_postgresql_sessions_hand_back_utc(engine, backend):
    if backend != "postgresql":
        pytest.skip("a PostgreSQL session setting")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW TimeZone").scalar() == "UTC"
        assert conn.exec_driver_sql("SELECT now()").scalar().tzinfo is UTC  # datetime.timezone.utc


def test_postgresql_aggregates_get_memory_to_sort_and_hash_in(session, dataset, backend):
    from sqlalchemy import text

    if backend != "postgresql":
        pytest.skip("a PostgreSQL transaction setting")
    quarter_figures(session, "2026Q3", now=NOW, min_ratings_to_rank=3)
    assert session.scalar(text("SHOW work_mem")) == "32MB"
    assert session.scalar(text("SHOW jit")) == "off"
