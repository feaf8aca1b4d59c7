"""The closed loop of a rectification case: open, answer, verify, reopen, escalate, close (DESIGN §2).

Every transition goes through `_move`, which checks it against TRANSITIONS and writes a CaseEvent
(who, when, from, to, note). Functions take the caller's session and never commit.

The working-day calendar and the calling windows come from scheduler.calendar, a pure module
without database or scheduler state (the one import of this layer from the scheduler's package).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.cases import Case, CaseEvent, CaseState, Escalation
from models.domain import Category, Grade
from models.settings import Settings
from models.survey_ops import finish_survey
from models.surveys import Answer, Survey, SurveyKind, SurveyState
from models.translatable import TranslatableError
from scheduler.calendar import add_working_days, contact_time, work_calendar

SYSTEM = "system"  # actor of the case opened by a bad review
VERIFICATION_VISIT = "verification-visit"  # actor of what the citizen said on the verification visit
ESCALATION_JOB = "escalation-job"  # actor of the overdue sweep
UNVERIFIED = "unverified"  # verification_result of a visit that ended without an answer
# Each state and the states it may move to.
TRANSITIONS: dict[CaseState, frozenset[CaseState]] = {
    CaseState.OPEN: frozenset({CaseState.ANSWERED, CaseState.ESCALATED}),
    CaseState.ANSWERED: frozenset({CaseState.CLOSED, CaseState.REOPENED, CaseState.ESCALATED}),
    CaseState.REOPENED: frozenset({CaseState.ANSWERED, CaseState.ESCALATED}),
    CaseState.ESCALATED: frozenset({CaseState.ANSWERED, CaseState.CLOSED}),
    CaseState.CLOSED: frozenset(),
}
# States in which a deadline runs: the department owes an answer.
AWAITING_ANSWER = (CaseState.OPEN, CaseState.REOPENED)


class CaseError(TranslatableError):
    """A case operation is not allowed; the message says why (and the console translates it)."""


def due_at_for(settings: Settings, start: datetime) -> datetime:
    """Return when a case started at `start` is due: [cases] due_working_days working days later."""
    return add_working_days(
        work_calendar(settings), start, settings.cases.due_working_days, settings.app.tz
    )


def _move(
    session: Session, case: Case, to: CaseState, actor: str, now: datetime, note: str | None = None
) -> None:
    """Change the case's state after checking the transition, and record it."""
    current = CaseState(case.state)
    if to not in TRANSITIONS[current] and not (to == current == CaseState.ESCALATED):
        allowed = sorted(s.value for s in TRANSITIONS[current])
        if not allowed:
            raise CaseError(
                "case %(id)s is %(state)s: it cannot become %(to)s (allowed: none: it is final)",
                id=case.id, state=current.value, to=to.value,
            )
        raise CaseError(
            "case %(id)s is %(state)s: it cannot become %(to)s (allowed: %(allowed)s)",
            id=case.id, state=current.value, to=to.value, allowed=allowed,
        )
    session.add(
        CaseEvent(case_id=case.id, at=now, actor=actor, from_state=current, to_state=to, note=note)
    )
    case.state = to


def _refuse_nul(case: Case, field: str, text: str) -> None:
    # PostgreSQL text cannot hold a NUL (SQLite would store it); a file given to the CLI may carry one.
    if "\x00" in text:
        raise CaseError("case %(id)s: the %(field)s contains a NUL character", id=case.id, field=field)


def _locked(session: Session, case: Case) -> Case:
    """Re-read the case under a row lock (PostgreSQL) so two actors cannot move it at once."""
    session.flush()
    session.refresh(case, with_for_update=True)
    return case


def _answers(session: Session, survey_id: int) -> dict[str, str]:
    rows = session.execute(
        select(Answer.question, Answer.value).where(Answer.survey_id == survey_id)
    )
    return dict(rows.all())


def _categories(value: str | None) -> list[str]:
    known = {c.value for c in Category}
    return [key for key in (value or "").split(",") if key in known]


def open_case_for(session: Session, survey: Survey, settings: Settings, now: datetime) -> Case | None:
    """Open the case of a survey's bad review (once); return the survey's case, or None.

    Safe to call after every stored answer: the first call that sees a bad rating opens the case,
    later calls fill in the categories and comment that arrived after it.
    """
    if survey.kind != SurveyKind.SURVEY:
        return None
    answers = _answers(session, survey.id)
    try:
        grade = Grade(answers.get("rating", ""))
    except ValueError:
        return None
    if not grade.is_bad:
        return None
    categories = _categories(answers.get("categories"))
    comment = answers.get("comment") or None
    case = session.scalars(select(Case).where(Case.survey_id == survey.id)).first()
    if case is not None:
        if categories and not case.categories:
            case.categories = categories
        if comment and comment != case.comment:
            case.comment = comment  # the citizen's words so far: a later SMS reply adds to them
        return case
    case = Case(
        survey_id=survey.id,
        department_id=survey.department_id,
        quarter=survey.quarter,
        grade=grade,
        categories=categories,
        comment=comment,
        state=CaseState.OPEN,
        opened_at=now,
        due_at=due_at_for(settings, now),
        reopened_count=0,
    )
    session.add(case)
    session.flush()
    session.add(
        CaseEvent(
            case_id=case.id, at=now, actor=SYSTEM, from_state=None, to_state=CaseState.OPEN,
            note=f"bad review ({grade.value}) in survey {survey.id}",
        )
    )
    return case


def _archive_round(session: Session, survey_id: int) -> None:
    """Rename a reused verification survey's answers so the next round can store its own.

    Rounds are numbered 1, 2, ... after those already archived (not by the case's reopenings: a
    round may also follow an escalation), so two rounds never take the same name.
    """
    answers = session.scalars(select(Answer).where(Answer.survey_id == survey_id)).all()
    archived = [a.question.rpartition("#")[2] for a in answers if "#" in a.question]
    round_number = 1 + max((int(n) for n in archived if n.isdigit()), default=0)
    for answer in answers:
        if "#" not in answer.question:
            answer.question = f"{answer.question}#{round_number}"[:30]


def schedule_verification(session: Session, case: Case, settings: Settings, now: datetime) -> Survey:
    """Create (or, after a reopening, reuse) the case's verification survey, due in the next window."""
    original = session.get(Survey, case.survey_id)
    if original is None:  # pragma: no cover - a foreign key guarantees it
        raise CaseError("case %(id)s has no survey", id=case.id)
    # The campaign's own calling windows, time zone and working days (what dispatch checks again).
    from scheduler.rules import contact_policy_for

    at = contact_time(contact_policy_for(original.campaign, settings), now, None)
    # One verification survey per item and campaign (a unique constraint): a second round reuses it.
    survey = session.scalars(
        select(Survey).where(
            Survey.campaign_id == original.campaign_id,
            Survey.item_id == original.item_id,
            Survey.kind == SurveyKind.VERIFICATION,
        )
    ).first()
    if survey is None:
        survey = Survey(
            campaign_id=original.campaign_id,
            item_id=original.item_id,
            kind=SurveyKind.VERIFICATION,
            department_id=original.department_id,
            quarter=original.quarter,
            language=original.language,
            channel=original.channel,
            created_at=now,
        )
        session.add(survey)
    else:
        _archive_round(session, survey.id)
        # The visit starts again: its age (rules.contact_age_from) and the attempts its retries
        # count (scheduler.outcomes) run from here, not from the first round.
        survey.created_at = now
    survey.token = secrets.token_urlsafe(24)
    survey.state = SurveyState.SCHEDULED
    survey.disposition = None
    survey.next_attempt_at = at
    survey.lease_owner = None
    survey.lease_expires_at = None
    survey.script_state = {}
    survey.first_attempt_at = None
    survey.finished_at = None
    survey.updated_at = now
    session.flush()
    return survey


def answer_case(
    session: Session, case: Case, feedback: str, actor: str, settings: Settings, now: datetime
) -> Survey:
    """Record the department's rectification feedback and schedule the verification visit."""
    if not says_something(feedback):
        raise CaseError("case %(id)s: the feedback must say how the complaint was handled", id=case.id)
    _refuse_nul(case, "feedback", feedback)
    _locked(session, case)
    _move(session, case, CaseState.ANSWERED, actor, now, feedback.strip())
    case.feedback = feedback.strip()
    case.answered_at = now
    case.verification_result = None
    case.verified_at = None
    survey = schedule_verification(session, case, settings, now)
    case.verification_survey_id = survey.id
    return survey


def on_verification_finished(
    session: Session, verification_survey: Survey, settings: Settings, now: datetime
) -> Case | None:
    """Apply a finished verification visit to its case: close, reopen once, or escalate."""
    if verification_survey.kind != SurveyKind.VERIFICATION:
        return None
    case = session.scalars(
        select(Case).where(Case.verification_survey_id == verification_survey.id)
    ).first()
    if case is None:
        return None
    _locked(session, case)
    if case.state != CaseState.ANSWERED:
        return case  # already settled (a repeated webhook, or a supervisor acted first)
    verdict = _answers(session, verification_survey.id).get("verification")
    if verdict == "satisfied":
        _move(session, case, CaseState.CLOSED, VERIFICATION_VISIT, now, "citizen satisfied with the handling")
        case.verification_result = verdict
        case.verified_at = now
        case.closed_at = now
    elif verdict == "dissatisfied":
        case.verification_result = verdict
        case.verified_at = now
        if case.reopened_count == 0:
            _move(session, case, CaseState.REOPENED, VERIFICATION_VISIT, now, "citizen not satisfied")
            case.reopened_count = 1
            case.due_at = due_at_for(settings, now)
        else:
            _move(
                session, case, CaseState.ESCALATED, VERIFICATION_VISIT, now,
                "citizen not satisfied after the case was reopened",
            )
            case.reopened_count += 1
    else:
        disposition = verification_survey.disposition or "unknown"
        case.verification_result = UNVERIFIED
        session.add(
            CaseEvent(
                case_id=case.id, at=now, actor=VERIFICATION_VISIT, from_state=case.state,
                to_state=case.state, note=f"verification visit ended without an answer ({disposition})",
            )
        )
    return case


def finish_survey_and_case(
    session: Session, survey: Survey, disposition: str, settings: Settings, now: datetime
) -> None:
    """Record a survey's final disposition; a verification visit's case learns that it ended."""
    finish_survey(session, survey, disposition, now)
    if survey.kind == SurveyKind.VERIFICATION:
        on_verification_finished(session, survey, settings, now)


def escalate_overdue(session: Session, settings: Settings, now: datetime, limit: int = 500) -> dict[str, int]:
    """Escalate up to `limit` open or reopened cases past their due time; return counts."""
    due = session.scalars(
        select(Case)
        .where(Case.state.in_(AWAITING_ANSWER), Case.due_at < now)
        .order_by(Case.due_at, Case.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    counts = {"escalated": 0, "from_open": 0, "from_reopened": 0}
    for case in due:
        counts[f"from_{case.state}"] += 1
        local_due = case.due_at.astimezone(settings.app.tz).strftime("%Y-%m-%d %H:%M")
        _move(session, case, CaseState.ESCALATED, ESCALATION_JOB, now, f"overdue: was due {local_due}")
        case.overdue_flagged_at = now
        counts["escalated"] += 1
    session.flush()
    return counts


def mark_escalation(
    session: Session, case: Case, escalation: Escalation | str, reason: str, actor: str, now: datetime
) -> None:
    """Record a supervisor's decision on a case: interview or transfer to discipline inspection."""
    decision = Escalation(escalation)
    if not says_something(reason):
        raise CaseError("case %(id)s: an escalation needs a reason", id=case.id)
    _refuse_nul(case, "reason", reason)
    _locked(session, case)
    note = f"{decision.value}: {reason.strip()}"
    if _visit_pending(session, case):
        # The citizen is still to be asked: the decision is recorded, the case stays answered, and
        # the visit's verdict settles it as usual (closing it now would skip the citizen).
        session.add(
            CaseEvent(
                case_id=case.id, at=now, actor=actor, from_state=case.state, to_state=case.state, note=note
            )
        )
    else:
        _move(session, case, CaseState.ESCALATED, actor, now, note)
    case.escalation = decision
    case.escalation_reason = reason.strip()


def says_something(text: str | None) -> bool:
    """Whether a reason, feedback or note holds a letter or digit (not only spaces or invisibles)."""
    return text is not None and any(ch.isalnum() for ch in text)


def _visit_pending(session: Session, case: Case) -> bool:
    """Whether the case's verification visit is scheduled or under way."""
    if case.verification_survey_id is None:
        return False
    visit = session.get(Survey, case.verification_survey_id)
    return visit is not None and visit.state != SurveyState.DONE


def close_case(session: Session, case: Case, note: str, actor: str, now: datetime) -> None:
    """Close an escalated case, or an answered one whose verification visit could not be made."""
    if not says_something(note):
        raise CaseError("case %(id)s: closing by hand needs a note", id=case.id)
    _refuse_nul(case, "note", note)
    _locked(session, case)
    waiting = case.state == CaseState.ANSWERED and case.verification_result != UNVERIFIED
    if waiting or _visit_pending(session, case):
        raise CaseError(
            "case %(id)s waits for its verification visit: it closes when the citizen answers", id=case.id
        )
    _move(session, case, CaseState.CLOSED, actor, now, note.strip())
    case.closed_at = now


def events_of(session: Session, case: Case) -> list[CaseEvent]:
    """Return the case's events, oldest first."""
    return list(
        session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id))
    )
