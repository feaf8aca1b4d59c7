"""Retention: personal data older than the retention period is purged, every figure stays.

What goes, for a service item completed before the cutoff whose surveys are all done and whose cases
are all closed (an item still in use is held back and counted):

- service_items: phone_raw, phone_e164, phone_extension and citizen_name become NULL; purged_at is set
  (picking never takes a purged item; a re-import leaves those columns empty). phone_kind, department,
  matter and dates stay.
- surveys of the item: the conversation state (stored TwiML and engine state, which may quote the
  citizen) is emptied. Dispositions, quarters and dates stay.
- answers: recording URLs become NULL (the duration stays); a comment's text has phone numbers masked
  and the citizen's name replaced; a voice comment (its value is the recording URL) becomes a marker.
  Ratings and categories are never touched.
- messages of those surveys: the citizen's number (From of an inbound text, To of an outbound one) is
  masked (138****5678) and phone numbers and the name in the body are masked.
- cases and case_events: phone numbers, the name and recording URLs in comment, feedback, the
  escalation reason and notes.

Messages older than the cutoff that belong to no survey, or to an already purged item, get the same
masking. Opt-outs are kept whole while they are live: they are the do-not-contact list, and the number
is what stops the next call. An opt-out revoked (START / staff) before the cutoff has its number masked
and its reason redacted. Attempts hold only our own caller ID; audit events hold masked numbers only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from models.cases import Case, CaseEvent, CaseState
from models.items import PERSONAL_COLUMNS, ServiceItem
from models.messages import Direction, Message
from models.operations import RetentionRun
from models.optouts import OptOut
from models.redaction import is_url_only, mask_number, redact_text
from models.surveys import Answer, Survey, SurveyState


def retention_cutoff(now: datetime, purge_after_days: int) -> datetime:
    """Return the time before which personal data is purged."""
    return now - timedelta(days=purge_after_days)


def purge_due(last_run_at: datetime | None, now: datetime, every: timedelta = timedelta(days=1)) -> bool:
    """Return whether the scheduled purge should run now (once a day)."""
    return last_run_at is None or now - last_run_at >= every


def _unmasked(column: Any) -> ColumnElement[bool]:
    return and_(column.is_not(None), column != "", ~column.contains("*"))


@dataclass
class PurgeReport:
    """What a purge changed (or, in a dry run, would change), by table and field."""

    cutoff: datetime
    dry_run: bool
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    # Items older than the cutoff kept because a survey is still open or a case not closed.
    held_items: int = 0
    # False when the run stopped at its item limit: the next run carries on.
    complete: bool = True

    def add(self, table: str, what: str, count: int) -> None:
        if count:
            self.counts[table][what] += count

    def as_dict(self) -> dict[str, Any]:
        """Return the counts as plain data."""
        return {
            "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run,
            "counts": {table: dict(fields) for table, fields in sorted(self.counts.items())},
            "held_items": self.held_items,
            "complete": self.complete,
        }


def _in_use() -> Any:
    # An item is in use while one of its surveys is not done or has a case not closed: one index
    # lookup of the item's surveys, then one of each survey's case.
    open_case = exists().where(Case.survey_id == Survey.id, Case.state != CaseState.CLOSED)
    return exists().where(Survey.item_id == ServiceItem.id, or_(Survey.state != SurveyState.DONE, open_case))


def _old_items(cutoff: datetime) -> list[ColumnElement[bool]]:
    # A purged item is taken again if personal data came back (a re-import before imports kept it out).
    restored = or_(*(ServiceItem.__table__.c[name].is_not(None) for name in PERSONAL_COLUMNS))
    return [ServiceItem.completed_at < cutoff, or_(ServiceItem.purged_at.is_(None), restored)]


def count_items(session: Session, cutoff: datetime) -> tuple[int, int]:
    """Return (items to purge, items held back by an open survey or case) before the cutoff."""
    total, held = session.execute(
        select(func.count(), func.count().filter(_in_use())).where(*_old_items(cutoff))
    ).one()
    return int(total) - int(held), int(held)


@dataclass
class _Batch:
    """The rows of one batch of items, and the changes planned for them."""

    names: dict[int, str] = field(default_factory=dict)  # survey id -> citizen name
    urls: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))  # survey id -> URLs
    updates: dict[type, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))


def _plan_items(
    session: Session, report: PurgeReport, batch: _Batch, ids: Sequence[int], now: datetime
) -> None:
    rows = session.execute(
        select(
            ServiceItem.id,
            ServiceItem.citizen_name,
            ServiceItem.phone_raw,
            ServiceItem.phone_e164,
            ServiceItem.phone_extension,
        ).where(ServiceItem.id.in_(ids))
    ).all()
    names = {item_id: name or "" for item_id, name, *_ in rows}
    report.add("service_items", "rows", len(rows))
    report.add("service_items", "phone_numbers", sum(1 for r in rows if any(r[2:])))
    report.add("service_items", "names", sum(1 for r in rows if r[1]))
    for item_id, *_ in rows:
        batch.updates[ServiceItem].append(
            {"id": item_id, **dict.fromkeys(PERSONAL_COLUMNS), "purged_at": now}
        )
    surveys = session.execute(
        select(Survey.id, Survey.item_id, Survey.script_state).where(Survey.item_id.in_(ids))
    )
    for survey_id, item_id, state in surveys:
        batch.names[survey_id] = names.get(item_id, "")
        if state:
            report.add("surveys", "conversation_state", 1)
            batch.updates[Survey].append({"id": survey_id, "script_state": {}})


def _plan_answers(session: Session, report: PurgeReport, batch: _Batch, region: str) -> None:
    survey_ids = list(batch.names)
    rows = session.execute(
        select(Answer.id, Answer.survey_id, Answer.value, Answer.channel, Answer.recording_url).where(
            Answer.survey_id.in_(survey_ids),
            or_(Answer.recording_url.is_not(None), Answer.question == "comment"),
        )
    )
    for answer_id, survey_id, value, channel, recording_url in rows:
        change: dict[str, Any] = {}
        urls = [recording_url] if recording_url else []
        if channel == "voice" and is_url_only(value):
            urls.append(value.strip())
        batch.urls[survey_id].extend(urls)
        if recording_url:
            change["recording_url"] = None
            report.add("answers", "recordings", 1)
        new_value = redact_text(value or "", region=region, names=[batch.names[survey_id]], urls=urls)
        if new_value != (value or ""):
            change["value"] = new_value
            report.add("answers", "comments", 1)
        if change:
            batch.updates[Answer].append({"id": answer_id, **change})


def _message_change(
    row: Any, report: PurgeReport, region: str, names: Sequence[str]
) -> dict[str, Any] | None:
    message_id, direction, from_e164, to_e164, body = row
    change: dict[str, Any] = {}
    side = "from_e164" if direction == Direction.INBOUND else "to_e164"
    current = from_e164 if side == "from_e164" else to_e164
    masked = mask_number(current)
    if masked != current:
        change[side] = masked
        report.add("messages", "citizen_numbers", 1)
    new_body = redact_text(body or "", region=region, names=names)
    if new_body != (body or ""):
        change["body"] = new_body
        report.add("messages", "bodies", 1)
    return {"id": message_id, **change} if change else None


_MESSAGE_COLUMNS = (Message.id, Message.direction, Message.from_e164, Message.to_e164, Message.body)


def _plan_messages(session: Session, report: PurgeReport, batch: _Batch, region: str) -> None:
    rows = session.execute(
        select(*_MESSAGE_COLUMNS, Message.survey_id).where(Message.survey_id.in_(list(batch.names)))
    )
    for *row, survey_id in rows:
        change = _message_change(row, report, region, [batch.names.get(survey_id or 0, "")])
        if change:
            batch.updates[Message].append(change)


def _plan_cases(session: Session, report: PurgeReport, batch: _Batch, region: str) -> None:
    survey_ids = list(batch.names)
    # A verification visit is a survey of the same item, so every case of the batch's items is found
    # by its own survey (an indexed column; verification_survey_id is not).
    rows = session.execute(
        select(
            Case.id,
            Case.survey_id,
            Case.verification_survey_id,
            Case.comment,
            Case.feedback,
            Case.escalation_reason,
        ).where(Case.survey_id.in_(survey_ids))
    ).all()
    context: dict[int, tuple[list[str], list[str]]] = {}
    for case_id, survey_id, verification_id, comment, feedback, escalation_reason in rows:
        related = [s for s in (survey_id, verification_id) if s in batch.names]
        names = [batch.names[s] for s in related]
        urls = [url for s in related for url in batch.urls.get(s, [])]
        context[case_id] = (names, urls)
        change: dict[str, Any] = {}
        texts = (("comment", comment), ("feedback", feedback), ("escalation_reason", escalation_reason))
        for key, text in texts:
            if text:
                redacted = redact_text(text, region=region, names=names, urls=urls)
                if redacted != text:
                    change[key] = redacted
        if change:
            report.add("cases", "texts", 1)
            batch.updates[Case].append({"id": case_id, **change})
    if not context:
        return
    events = session.execute(
        select(CaseEvent.id, CaseEvent.case_id, CaseEvent.note).where(
            CaseEvent.case_id.in_(list(context)), CaseEvent.note.is_not(None)
        )
    )
    for event_id, case_id, note in events:
        names, urls = context[case_id]
        redacted = redact_text(note or "", region=region, names=names, urls=urls)
        if redacted != (note or ""):
            report.add("case_events", "notes", 1)
            batch.updates[CaseEvent].append({"id": event_id, "note": redacted})


def _apply(session: Session, updates: dict[type, list[dict[str, Any]]]) -> None:
    for model, rows in updates.items():
        if rows:
            # ORM bulk UPDATE by primary key: one executemany per table.
            session.execute(update(model), rows)


def _item_batches(
    sessions: sessionmaker[Session],
    report: PurgeReport,
    *,
    cutoff: datetime,
    now: datetime,
    region: str,
    batch_size: int,
    max_items: int | None,
    on_batch: Callable[[int], None] | None,
) -> None:
    last_id, done = 0, 0
    while True:
        if max_items is not None and done >= max_items:
            report.complete = False
            return
        with sessions() as session:
            ids = list(
                session.scalars(
                    select(ServiceItem.id)
                    .where(*_old_items(cutoff), ServiceItem.id > last_id, ~_in_use())
                    .order_by(ServiceItem.id)
                    .limit(batch_size)
                )
            )
            if not ids:
                return
            batch = _Batch()
            _plan_items(session, report, batch, ids, now)
            _plan_answers(session, report, batch, region)
            _plan_messages(session, report, batch, region)
            _plan_cases(session, report, batch, region)
            _finish(session, batch.updates, report.dry_run)
        last_id, done = ids[-1], done + len(ids)
        if on_batch is not None:
            on_batch(len(ids))


def _finish(session: Session, updates: dict[type, list[dict[str, Any]]], dry_run: bool) -> None:
    if dry_run:
        session.rollback()
        return
    _apply(session, updates)
    session.commit()


def _loose_messages(
    sessions: sessionmaker[Session], report: PurgeReport, *, cutoff: datetime, region: str, batch_size: int
) -> None:
    # Texts older than the cutoff that no purged batch reached: unrouted ones, and late replies to a
    # survey whose item was purged before they arrived.
    citizen_side = or_(
        and_(Message.direction == Direction.INBOUND, _unmasked(Message.from_e164)),
        and_(Message.direction == Direction.OUTBOUND, _unmasked(Message.to_e164)),
    )
    last_id = 0
    while True:
        with sessions() as session:
            rows = session.execute(
                select(*_MESSAGE_COLUMNS, ServiceItem.citizen_name)
                .outerjoin(Survey, Message.survey_id == Survey.id)
                .outerjoin(ServiceItem, Survey.item_id == ServiceItem.id)
                .where(
                    Message.created_at < cutoff,
                    Message.id > last_id,
                    or_(Message.survey_id.is_(None), ServiceItem.purged_at.is_not(None)),
                    citizen_side,
                )
                .order_by(Message.id)
                .limit(batch_size)
            ).all()
            if not rows:
                return
            updates: dict[type, list[dict[str, Any]]] = defaultdict(list)
            for *row, name in rows:
                change = _message_change(row, report, region, [name or ""])
                if change:
                    updates[Message].append(change)
            _finish(session, updates, report.dry_run)
        last_id = rows[-1][0]


def _revoked_optouts(
    sessions: sessionmaker[Session], report: PurgeReport, *, cutoff: datetime, region: str
) -> None:
    with sessions() as session:
        rows = session.execute(
            select(OptOut.id, OptOut.phone_e164, OptOut.reason).where(
                OptOut.revoked_at < cutoff, _unmasked(OptOut.phone_e164)
            )
        ).all()
        updates: dict[type, list[dict[str, Any]]] = defaultdict(list)
        for optout_id, phone, reason in rows:
            change: dict[str, Any] = {"id": optout_id, "phone_e164": mask_number(phone) or "*"}
            if reason:
                change["reason"] = redact_text(reason, region=region)
            updates[OptOut].append(change)
        report.add("opt_outs", "revoked_numbers", len(rows))
        _finish(session, updates, report.dry_run)


def purge(
    sessions: sessionmaker[Session],
    *,
    cutoff: datetime,
    now: datetime,
    region: str,
    dry_run: bool = False,
    batch_size: int = 500,
    actor: str = "cli",
    max_items: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> PurgeReport:
    """Purge personal data older than `cutoff` in batches (each its own transaction); return the counts.

    A dry run reads the same rows, counts the same changes and writes nothing. With `max_items` the
    run stops after about that many items and is not recorded as a finished run (the next one goes on).
    """
    report = PurgeReport(cutoff=cutoff, dry_run=dry_run)
    with sessions() as session:
        _, report.held_items = count_items(session, cutoff)
        session.rollback()
    _item_batches(
        sessions,
        report,
        cutoff=cutoff,
        now=now,
        region=region,
        batch_size=batch_size,
        max_items=max_items,
        on_batch=on_batch,
    )
    if not report.complete:
        return report
    _loose_messages(sessions, report, cutoff=cutoff, region=region, batch_size=batch_size)
    _revoked_optouts(sessions, report, cutoff=cutoff, region=region)
    if not dry_run:
        with sessions() as session:
            session.add(
                RetentionRun(started_at=now, cutoff=cutoff, actor=actor[:120], counts=report.as_dict())
            )
            session.commit()
    return report


def last_run_at(session: Session) -> datetime | None:
    """Return when the last (non-dry) purge started, or None."""
    return session.scalar(select(func.max(RetentionRun.started_at)))
