"""Accept a send request: render, decide per recipient and channel, store it all in one transaction.

The template and context are checked before anything is stored. Recipients are then taken a chunk
at a time: rendered (once per request when the template does not read `recipient`), decided
(notify/enqueue_plan.py: one policy evaluation per distinct situation, not per row) and stored
(notify/enqueue_store.py: COPY on Postgres, executemany on SQLite), all in the caller's one
transaction. The same idempotency key again is a no-op that answers with the first request's
notification ids; a request that failed half-way left nothing, so its retry stores it once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from notify.conditions import start_conditions
from notify.db import Notification, Recipient
from notify.enqueue_plan import Planner, known_external_ids, recipient_rows
from notify.enqueue_store import ChunkStore, ChunkWriter, RequestColumns, store_for
from notify.errors import InputError
from notify.fallback import suppressed_sms_fallbacks
from notify.recipients import recipients_by_external_id
from notify.rendering import RenderedMessage, TemplateCatalog
from notify.settings import Priority, Settings

CHUNK = 1000  # recipients rendered, decided and inserted at a time


@dataclass(frozen=True)
class SendRequest:
    template: str
    to: tuple[str, ...]
    context: Mapping[str, Any] = field(default_factory=dict)
    priority: Priority | None = None
    idempotency_key: str | None = None
    skip_unknown: bool = False


@dataclass(frozen=True)
class Attribution:
    """Who created the notifications (shown by loop detection)."""

    flow_run_id: str | None = None
    deployment_name: str | None = None


@dataclass(frozen=True)
class EnqueueResult:
    request_id: str
    notification_ids: tuple[int, ...]
    duplicate: bool
    unknown_recipients: tuple[str, ...]
    rows: Mapping[str, Mapping[str, int]]  # channel -> status -> rows: {"email": {"pending": 3}}


def recipient_context(context: Mapping[str, Any], recipient: Recipient) -> dict[str, Any]:
    """What a template sees: the request's context plus `recipient` (name, external_id)."""
    who = {"name": recipient.name, "external_id": recipient.external_id}
    return {**context, "recipient": who}


def enqueue(
    *,
    session: Session,
    request: SendRequest,
    catalog: TemplateCatalog,
    settings: Settings,
    now: datetime,
    attribution: Attribution = Attribution(),
    chunk: int | None = None,
) -> EnqueueResult:
    """Store the notifications and delivery rows; a repeated idempotency key is a no-op.

    The request is processed `chunk` (default CHUNK) recipients at a time inside the caller's
    transaction, so memory stays bounded however many recipients it names, and a request that
    fails half-way (or whose process dies) leaves nothing behind once the transaction is rolled
    back: a retry with the same key then stores it whole, once. Postgres stores by COPY, other
    databases by executemany.
    """
    if request.idempotency_key:
        existing = existing_request(session=session, request_id=request.idempotency_key)
        if existing:
            return EnqueueResult(request.idempotency_key, existing, True, (), {})
    wanted, unknown = preflight(session=session, request=request, catalog=catalog)
    request_id = request.idempotency_key or uuid.uuid4().hex
    planner = Planner(settings, now, start_conditions(session=session, now=now), request.priority)
    shared = RequestColumns(
        context=request.context,
        request_id=request_id,
        flow_run_id=attribution.flow_run_id,
        deployment_name=attribution.deployment_name,
        idempotency_key=request.idempotency_key,
        now=now,
    )
    renderer = _Renderer(catalog, request)
    store = store_for(session.connection(), shared)
    ids = _store_chunks(session, wanted, chunk or CHUNK, planner, renderer, store)
    counts = nest_counts(planner.counts)
    skipped_sms = counts.get("sms", {}).get("skipped", 0)
    fallbacks = skipped_sms and suppressed_sms_fallbacks(  # no query when no SMS was skipped
        session.connection(),
        request_id=request_id,
        template_allows=catalog.info(request.template).fallback_email,
        now=now,
    )
    if fallbacks:  # email rows replacing SMS rows skipped for a muted number (notify.fallback)
        email = counts.setdefault("email", {})
        email["pending"] = email.get("pending", 0) + fallbacks
    return EnqueueResult(request_id, tuple(ids), False, unknown, counts)


def nest_counts(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """{("email", "sent"): 3} -> {"email": {"sent": 3}}, channels and statuses sorted."""
    nested: dict[str, dict[str, int]] = {}
    for (channel, status), count in sorted(counts.items()):
        nested.setdefault(channel, {})[status] = count
    return nested


def _store_chunks(
    session: Session,
    wanted: list[str],
    size: int,
    planner: Planner,
    renderer: _Renderer,
    store: ChunkStore,
) -> list[int]:
    """Chunk k is read (recipients, conditions, reserved ids) before chunk k-1 is written, then
    decided and encoded while chunk k-1 is written (on Postgres, in the background). Chunks hold
    different recipients, so reading k before k-1 is stored changes no decision."""
    connection = session.connection()
    held: Any = None
    offset = 0
    with ChunkWriter(store, connection) as writer:
        for start in range(0, len(wanted), size):
            writer.wait()
            recipients = recipient_rows(session=session, external_ids=wanted[start : start + size])
            loaded = planner.load(session, recipients, renderer)
            reserved = store.reserve(connection, len(recipients))
            if held is not None:
                writer.start(held)
            held = store.encode(planner.decide(loaded), reserved, offset)
            offset += len(recipients)
        writer.wait()
        if held is not None:
            writer.start(held)
    return writer.ids


def preflight(
    *, session: Session, request: SendRequest, catalog: TemplateCatalog
) -> tuple[list[str], tuple[str, ...]]:
    """The checks made before anything is stored: recipients known (or skipped on request),
    template and context complete. Returns (known external ids in order, unknown ones)."""
    wanted = list(dict.fromkeys(name.strip() for name in request.to if name.strip()))
    if not wanted:
        raise InputError("to: no recipients given (use --to EXTERNAL_ID or --to-file FILE)")
    known = known_external_ids(session=session, external_ids=wanted)
    unknown = tuple(name for name in wanted if name not in known)
    if unknown and not request.skip_unknown:
        shown = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise InputError(
            f"to: {len(unknown)} unknown recipient(s): {shown} "
            "(import them first, or pass --skip-unknown)"
        )
    wanted = [name for name in wanted if name in known]
    if not wanted:
        raise InputError("to: none of the recipients is known")
    first = recipients_by_external_id(session=session, external_ids=wanted[:1])[wanted[0]]
    catalog.check(request.template, recipient_context(request.context, first))
    return wanted, unknown


def existing_request(*, session: Session, request_id: str) -> tuple[int, ...]:
    query = select(Notification.id).where(Notification.request_id == request_id)
    return tuple(session.scalars(query.order_by(Notification.id)))


class _Renderer:
    """Renders once per request when the template never reads `recipient`; otherwise per
    recipient, re-rendering only the parts that read `recipient` (the others are the same
    strings as the recipient before's, which the store encodes once)."""

    def __init__(self, catalog: TemplateCatalog, request: SendRequest) -> None:
        self.catalog, self.request = catalog, request
        reads = catalog.part_reads(request.template)
        self.personal = any("recipient" in part for part in reads)
        self._last: RenderedMessage | None = None

    def __call__(self, recipient: Any) -> RenderedMessage:
        if self._last is not None and not self.personal:
            return self._last
        context = recipient_context(self.request.context, recipient)
        template = self.request.template
        self._last = self.catalog.render_reusing(template, context, self._last, ("recipient",))
        return self._last
