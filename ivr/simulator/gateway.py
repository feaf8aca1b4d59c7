"""The simulated gateway: the dispatcher's place_call / send_sms, played on the local phone network.

Like Twilio's REST API it answers at once with a provider id and status "queued"; the call or text
happens later, when `run_pending` (tests, the scheduler's --once) or the background worker (the demo)
takes it from the queue, first in, first out.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ivr import urls
from ivr.simulator.network import CALL_EVENTS, CallRecord, PhoneNetwork, SmsRecord
from ivr.simulator.personas import Persona
from models.settings import Settings
from scheduler.gateway import CallRequest, GatewayError, GatewayResult, SmsRequest

log = logging.getLogger(__name__)
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


@dataclass(frozen=True)
class _Job:
    sid: str
    request: CallRequest | SmsRequest


class SimulatedGateway:
    """A Gateway whose calls and texts go to simulated citizens instead of Twilio."""

    name = "simulator"

    def __init__(
        self,
        network: PhoneNetwork,
        public_base_url: str,
        persona_for: Callable[[str], Persona],
        *,
        run_inline: bool = False,
        call_status_events: tuple[str, ...] = CALL_EVENTS,
    ) -> None:
        self.network = network
        self.public_base_url = public_base_url
        self.persona_for = persona_for
        self.run_inline = run_inline
        self.call_status_events = call_status_events
        self.records: list[CallRecord | SmsRecord] = []  # every finished call and text, in order
        self._queue: deque[_Job] = deque()
        self._lock = threading.Condition()
        self._failure: GatewayError | None = None
        self._worker: tuple[threading.Thread, threading.Event] | None = None

    def fail_next(self, code: str = "21211", retryable: bool = False, message: str | None = None) -> None:
        """Make the next place_call or send_sms raise GatewayError with this provider code."""
        with self._lock:
            text = message or f"simulated provider error {code}"
            self._failure = GatewayError(text, code=code, retryable=retryable)

    def place_call(self, request: CallRequest) -> GatewayResult:
        """Queue a call and answer with its CallSid, as Twilio's Calls API does."""
        return self._accept(_Job(self._admit(request.to, "CA"), request))

    def send_sms(self, request: SmsRequest) -> GatewayResult:
        """Queue a text and answer with its MessageSid, as Twilio's Messages API does."""
        return self._accept(_Job(self._admit(request.to, "SM"), request))

    @property
    def pending(self) -> int:
        """Return how many calls and texts wait in the queue."""
        with self._lock:
            return len(self._queue)

    def run_pending(self, max_calls: int | None = None) -> list[CallRecord | SmsRecord]:
        """Play the queued calls and texts in order in this thread (at most `max_calls` of them)."""
        done: list[CallRecord | SmsRecord] = []
        while max_calls is None or len(done) < max_calls:
            with self._lock:
                if not self._queue:
                    break
                job = self._queue.popleft()
            done.append(self._run(job))
        return done

    def start_worker(self) -> None:
        """Play queued calls and texts on a background thread until stop()."""
        with self._lock:
            if self._worker is not None:
                return
            stopped = threading.Event()
            thread = threading.Thread(target=self._work, args=(stopped,), name="simulator", daemon=True)
            self._worker = (thread, stopped)
        thread.start()

    def stop(self, timeout: float | None = 10) -> None:
        """Stop the background worker after the call it is playing; queued jobs stay queued."""
        with self._lock:
            worker, self._worker = self._worker, None
            if worker is None:
                return
            worker[1].set()
            self._lock.notify_all()
        worker[0].join(timeout)

    def _admit(self, to: str, prefix: str) -> str:
        with self._lock:
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        if not _E164.match(to):
            raise GatewayError(f"'To' number {to} is not a valid phone number", code="21211", retryable=False)
        return self.network.new_sid(prefix)

    def _accept(self, job: _Job) -> GatewayResult:
        if self.run_inline:
            # The webhooks run before the caller stores the sid: they must find the attempt by its URL.
            self._run(job)
        else:
            with self._lock:
                self._queue.append(job)
                self._lock.notify_all()
        return GatewayResult(provider_id=job.sid, status="queued")

    def _run(self, job: _Job) -> CallRecord | SmsRecord:
        request, base = job.request, self.public_base_url
        persona = self.persona_for(request.to)
        record: CallRecord | SmsRecord
        if isinstance(request, CallRequest):
            record = self.network.run_call(
                request.to,
                request.from_,
                urls.voice_url(base, request.survey_token, request.attempt_id, request.language),
                persona=persona,
                status_callback=urls.voice_status_url(base, request.survey_token, request.attempt_id),
                status_events=self.call_status_events,
                machine_detection=request.machine_detection,
                call_sid=job.sid,
            )
        else:
            record = self.network.run_outbound_sms(
                request.to,
                request.from_,
                request.body,
                persona=persona,
                status_callback=urls.sms_status_url(base, request.survey_token, request.attempt_id),
                inbound_url=urls.sms_inbound_url(base),
                message_sid=job.sid,
            )
        for error in record.errors:
            log.warning("simulated %s %s: %s", type(request).__name__, job.sid, error)
        with self._lock:
            self.records.append(record)
        return record

    def _work(self, stopped: threading.Event) -> None:
        while True:
            with self._lock:
                while not self._queue and not stopped.is_set():
                    self._lock.wait()
                if stopped.is_set():
                    return
                job = self._queue.popleft()
            try:
                self._run(job)
            except Exception:  # a broken persona or transport must not kill the demo's worker
                log.exception("simulated job %s failed", job.sid)


def from_settings(
    settings: Settings, *, seed: int = 2026, recordings_url: str | None = None
) -> SimulatedGateway:
    """Return the simulated network for a running system: random citizens, webhooks over HTTP.

    Calls and texts run on a background worker, requesting app.public_base_url as Twilio would. The
    seed draws the citizens' behaviour; sids are new in every process.
    """
    import random

    from ivr.simulator.network import PhoneNetwork
    from ivr.simulator.personas import RandomPersona
    from ivr.simulator.transport import HttpTransport

    rng = random.Random(seed)  # noqa: S311 - simulated citizens, not secrets
    # Call and message sids are random, not seeded: each process (the demo, then `scheduler --once`)
    # must issue new ones, as Twilio does, or the second one's attempts collide on provider_id.
    network = PhoneNetwork(HttpTransport(), settings.twilio.auth_token, recordings_url=recordings_url)
    gateway = SimulatedGateway(
        network, settings.app.public_base_url, lambda _number: RandomPersona(random.Random(rng.random()))  # noqa: S311
    )
    gateway.start_worker()
    return gateway
