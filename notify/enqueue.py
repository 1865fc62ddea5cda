"""Accept a send request: render, decide per recipient and channel, store it all in one transaction.

The template and context are checked before anything is stored. Recipients are then taken a chunk
at a time: rendered (once per request when the template does not read `recipient`), decided
(notify/enqueue_plan.py: one policy evaluation per distinct situation, not per row) and stored
(notify/enqueue_store.py: COPY on Postgres, executemany on SQLite), all in the caller's one
transaction. The same idempotency key again is a no-op that answers with the first request's
notification ids; a request that failed half-way left nothing, so its retry stores it once.

A keyed request may also be stored in parts (`request_parts`): each part is a range of positions
in the request's recipient list, stored by its own `enqueue(part=...)` call in its own
transaction, so the first part is delivered while the next is stored (the dispatch flow). A
notification's key names its position, so a part run again stores only the positions not stored
yet (a request that failed half-way resumes where it stopped), and a store of a key waits for
another store of the same key under way, then answers what that one stored (`_hold_key`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from notify.conditions import start_conditions
from notify.db import NOTIFICATIONS, REQUEST_KEY_TURN, Notification, Recipient
from notify.enqueue_plan import Planner, known_external_ids, recipient_rows
from notify.enqueue_store import ChunkStore, ChunkWriter, RequestColumns, chunk_reader, store_for
from notify.errors import InputError
from notify.fallback import suppressed_sms_fallbacks
from notify.ids import NotificationIds
from notify.recipients import hold_roster, recipients_by_external_id
from notify.rendering import RECIPIENT, RenderedMessage, TemplateCatalog
from notify.settings import Priority, Settings
from notify.validation import refuse_unstorable

CHUNK = 1000  # recipients rendered, decided and inserted at a time


@dataclass(frozen=True)
class SendRequest:
    template: str
    to: tuple[str, ...]
    context: Mapping[str, Any] = field(default_factory=dict)
    priority: Priority | None = None
    idempotency_key: str | None = None
    skip_unknown: bool = False

    @cached_property
    def recipients(self) -> tuple[str, ...]:
        """The recipients as positions count them: stripped, blanks and repeats dropped.
        Worked out once per request: each part of a large request slices it."""
        return tuple(dict.fromkeys(name.strip() for name in self.to if name.strip()))

    @cached_property
    def fingerprint(self) -> str:
        """What the request asks for, as its rows record it (SHA-256, hex): the template, the
        recipients in order (positions name the notifications), the context and the priority.
        The same key with another fingerprint is another request. Not `skip_unknown`: a request
        whose later part found a recipient deleted is run again with it to store the rest."""
        return self.fingerprint_with(self.priority)

    def fingerprint_with(self, priority: Priority | None) -> str:
        """The fingerprint of this request with `priority` (None: the template's own)."""
        asked = [self.template, self.recipients, self.context, priority.value if priority else None]
        canonical = json.dumps(asked, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def fingerprints(self, template_priority: Priority | None) -> frozenset[str]:
        """The fingerprints that ask for what this request asks: the template's own priority
        named (`--priority high` for a high template) or left out is the same request."""
        if template_priority is None or self.priority not in (None, template_priority):
            return frozenset({self.fingerprint})
        return frozenset({self.fingerprint_with(None), self.fingerprint_with(template_priority)})


@dataclass(frozen=True)
class Attribution:
    """Who created the notifications (shown by loop detection)."""

    flow_run_id: str | None = None
    deployment_name: str | None = None


@dataclass(frozen=True)
class EnqueueResult:
    request_id: str
    notification_ids: NotificationIds
    duplicate: bool
    unknown_recipients: tuple[str, ...]
    rows: Mapping[str, Mapping[str, int]]  # channel -> status -> rows: {"email": {"pending": 3}}

    @classmethod
    def merged(cls, parts: Sequence[EnqueueResult]) -> EnqueueResult:
        """One answer for a request stored in parts: every part's ids and rows, the unknown
        recipients (the first part reports them all), a duplicate when no part stored anything."""
        counts: Counter[tuple[str, str]] = Counter()
        for part in parts:
            for channel, by_status in part.rows.items():
                counts.update({(channel, status): n for status, n in by_status.items()})
        return cls(
            parts[0].request_id,
            NotificationIds.joined(part.notification_ids for part in parts),
            all(part.duplicate for part in parts),
            tuple(name for part in parts for name in part.unknown_recipients),
            nest_counts(counts),
        )


def recipient_context(context: Mapping[str, Any], recipient: Recipient) -> dict[str, Any]:
    """What a template sees: the request's context plus `recipient` (name, external_id)."""
    who = {"name": recipient.name, "external_id": recipient.external_id}
    return {**context, RECIPIENT: who}


def enqueue(
    *,
    session: Session,
    request: SendRequest,
    catalog: TemplateCatalog,
    settings: Settings,
    now: datetime,
    attribution: Attribution = Attribution(),
    chunk: int | None = None,
    part: range | None = None,
) -> EnqueueResult:
    """Store the notifications and delivery rows; a repeated idempotency key is a no-op.

    The request is processed `chunk` (default CHUNK) recipients at a time inside the caller's
    transaction, so memory stays bounded however many recipients it names, and a request that
    fails half-way (or whose process dies) leaves nothing behind once the transaction is rolled
    back: a retry with the same key then stores it whole, once. Postgres stores by COPY, other
    databases by executemany.

    `part` (a keyed request only; see `request_parts`): store only these positions of the
    request's recipient list. The part at position 0 checks the whole request first (an unknown
    recipient or a missing variable refuses it before anything is stored) and reports every
    unknown recipient; a later part checks its own recipients. Recipients of the part (or of the
    request) already stored under the key are answered, not stored again.
    """
    key = request.idempotency_key
    _storable(template=request.template, context=request.context, idempotency_key=key)
    catalog.refuse_internal(request.template)  # whatever its key: no request sends `digest`
    # no roster change runs between the addresses read here and the commit (hold_roster)
    hold_roster(session.connection(), to_change=False)
    if key:
        _hold_key(session.connection(), key)
    if not key and part == range(len(request.recipients)):
        part = None  # the one part `request_parts` gives an unkeyed request: stored whole
    if part is not None and not key:
        raise ValueError("part: only a request with an idempotency key is stored in parts")
    stored_any = bool(key) and _stored_under_key(session, request, _own_priority(catalog, request))
    if part is None and stored_any:
        existing = existing_request(session=session, request_id=key or "")
        return EnqueueResult(key or "", existing, True, (), {})
    requested = request.recipients
    scope = requested if part is None else requested[part.start : part.stop]
    stored = _stored_positions(session, key or "", part) if part is not None and stored_any else {}
    if stored and len(stored) == len(scope):  # the whole part is stored: answered
        return EnqueueResult(key or "", NotificationIds(sorted(stored.values())), True, (), {})
    if part is None or part.start == 0:
        known, unknown = preflight(session=session, request=request, catalog=catalog)
    else:  # a later part: the first one checked the whole request and reported the unknown
        known, unknown = _still_known(session, request, scope), ()
    first = part.start if part is not None else 0
    position = {name: first + n for n, name in enumerate(scope)}
    wanted = [name for name in known if name in position and position[name] not in stored]
    request_id = key or uuid.uuid4().hex
    planner = Planner(settings, now, start_conditions(session=session, now=now), request.priority)
    shared = RequestColumns(
        context=request.context,
        request_id=request_id,
        flow_run_id=attribution.flow_run_id,
        deployment_name=attribution.deployment_name,
        idempotency_key=request.idempotency_key,
        now=now,
        fingerprint=request.fingerprint if key else None,
    )
    renderer = _Renderer(catalog, request)
    store = store_for(session.connection(), shared)
    ids = _store_chunks(session, wanted, position, chunk or CHUNK, planner, renderer, store)
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
    answered = NotificationIds(sorted([*ids, *stored.values()]) if stored else ids)
    return EnqueueResult(request_id, answered, bool(stored) and not ids, unknown, counts)


def _still_known(session: Session, request: SendRequest, names: Sequence[str]) -> list[str]:
    """A later part's recipients that exist (in order). One deleted since the first part
    checked the request refuses this part, unless the request skips unknown recipients."""
    known, _ = _split_known(
        session,
        request,
        names,
        "recipient(s) no longer known",
        "the request's earlier parts are stored; send it again with skip_unknown "
        "(--skip-unknown) to store the rest",
    )
    return known


def _split_known(
    session: Session, request: SendRequest, names: Sequence[str], what: str, fix: str
) -> tuple[list[str], tuple[str, ...]]:
    """`names` as (the known ones in order, the unknown ones). Unknown ones refuse the request,
    an InputError saying `what` they are and the `fix`, unless it skips unknown recipients."""
    known = known_external_ids(session=session, external_ids=names)
    unknown = tuple(name for name in names if name not in known)
    if unknown and not request.skip_unknown:
        shown = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise InputError(f"to: {len(unknown)} {what}: {shown} ({fix})")
    return [name for name in names if name in known], unknown


def request_parts(request: SendRequest, size: int) -> list[range]:
    """The positions of a keyed request in parts of `size` recipients (one part when it fits,
    or when the request has no key: an unkeyed request is stored in one transaction)."""
    count = len(request.recipients)
    if not request.idempotency_key or count <= size:
        return [range(count)]
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def _own_priority(catalog: TemplateCatalog, request: SendRequest) -> Priority | None:
    """The template's priority, or None for a template the catalogue no longer has (its stored
    requests are still answered; a new one is refused by the preflight)."""
    try:
        return catalog.info(request.template).priority
    except InputError:
        return None


def _stored_under_key(
    session: Session, request: SendRequest, template_priority: Priority | None
) -> bool:
    """Whether rows are stored under the request's key: one probe of the request id (a keyed
    request's rows carry its key as their request id). Rows of another request under the key
    (another fingerprint) refuse this one: answered position by position, a changed recipient
    list would send a second copy to one recipient and nothing to another. Rows stored before
    fingerprints were recorded have none and are answered as before."""
    key = request.idempotency_key
    fingerprint = NOTIFICATIONS.c.request_fingerprint
    under_key = select(fingerprint).where(NOTIFICATIONS.c.request_id == key).limit(1)
    # a row that has one first: a request stored partly before fingerprints, then resumed
    stored = session.execute(under_key.where(fingerprint.is_not(None))).first()
    stored = stored or session.execute(under_key).first()
    if stored is None:
        return False
    same = request.fingerprints(template_priority)
    if stored.request_fingerprint is not None and stored.request_fingerprint not in same:
        raise InputError(
            f"idempotency_key: {key!r} was already used for a different request (another "
            "recipient list, template, context or priority); send this one with a new key, or "
            "repeat the first request exactly to get its answer"
        )
    return True


def _stored_positions(session: Session, key: str, part: range) -> dict[int, int]:
    """Position -> notification id of the part's recipients already stored under `key` (a
    retried part, or a request run again after it failed half-way); asked only when the key
    has rows (`_stored_under_key`), instead of a lookup per recipient for every new request."""
    keys = [f"{key}#{position}" for position in part]
    found: dict[int, int] = {}
    for start in range(0, len(keys), CHUNK):
        query = select(NOTIFICATIONS.c.idempotency_key, NOTIFICATIONS.c.id).where(
            NOTIFICATIONS.c.idempotency_key.in_(keys[start : start + CHUNK])
        )
        for name, nid in session.execute(query):
            found[int(name.rpartition("#")[2])] = nid
    return found


def nest_counts(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """{("email", "sent"): 3} -> {"email": {"sent": 3}}, channels and statuses sorted."""
    nested: dict[str, dict[str, int]] = {}
    for (channel, status), count in sorted(counts.items()):
        nested.setdefault(channel, {})[status] = count
    return nested


def _store_chunks(
    session: Session,
    wanted: list[str],
    position: Mapping[str, int],
    size: int,
    planner: Planner,
    renderer: _Renderer,
    store: ChunkStore,
) -> list[int]:
    """Chunk k+1 is read (recipients, conditions, reserved ids), decided and encoded while chunk
    k is written (on Postgres, in the background, and read through a second connection when
    `chunk_reader` gives one). Chunks hold different recipients, so reading one before the
    chunks before it are stored changes no decision."""
    with chunk_reader(session, store) as reads, ChunkWriter(store, session.connection()) as writer:
        shared = reads is session  # one connection: a read waits for the write in flight
        for start in range(0, len(wanted), size):
            if shared:
                writer.wait()
            recipients = recipient_rows(session=reads, external_ids=wanted[start : start + size])
            loaded = planner.load(reads, recipients, renderer)
            reserved = store.reserve(reads.connection(), len(recipients))
            if not shared:
                reads.commit()  # read-only: no snapshot or lock held across chunks
            positions = [position[r.external_id] for r in recipients]
            encoded = store.encode(planner.decide(loaded), reserved, positions)
            writer.wait()
            writer.start(encoded)
        writer.wait()
    return writer.ids


def preflight(
    *, session: Session, request: SendRequest, catalog: TemplateCatalog
) -> tuple[list[str], tuple[str, ...]]:
    """The checks made before anything is stored: a template a request may name (not an
    internal one), recipients known (or skipped on request), template and context complete.
    Returns (known external ids in order, unknown ones)."""
    catalog.refuse_internal(request.template)
    if not request.recipients:
        raise InputError("to: no recipients given (use --to EXTERNAL_ID or --to-file FILE)")
    _storable(to=request.recipients)  # the whole list, once: a later part's are among them
    wanted, unknown = _split_known(
        session,
        request,
        request.recipients,
        "unknown recipient(s)",
        "import them first, or send with skip_unknown (--skip-unknown)",
    )
    if not wanted:
        raise InputError("to: none of the recipients is known")
    refuse_own_recipient(request.context)
    first = recipients_by_external_id(session=session, external_ids=wanted[:1])[wanted[0]]
    catalog.check(request.template, recipient_context(request.context, first))
    return wanted, unknown


def refuse_own_recipient(context: Mapping[str, Any]) -> None:
    """A context may not hold `recipient`: `recipient_context` puts each recipient's own over
    it, so the value would be ignored (by a send, and by a preview, which renders as a send)."""
    if RECIPIENT in context:
        raise InputError(
            f"context.{RECIPIENT}: templates get each recipient's own (name, external_id), "
            "so this value would be ignored; give it another name"
        )


def _hold_key(connection: Connection, key: str) -> None:
    """Until the caller's transaction ends, no other store of the same key: the same request
    sent again while its first store has not committed (a retried dispatch) waits for it, then
    finds its rows and answers them. Without it, on PostgreSQL, the second found nothing under
    the key, stored its own and failed on the unique key (an IntegrityError). PostgreSQL: a
    transaction advisory lock on the key's hash (another key rarely shares it: it then waits
    for that store too); SQLite: the one write lock `hold_roster` took already."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:lock_class, hashtext(:key))"),
            {"lock_class": REQUEST_KEY_TURN, "key": key},
        )


def _storable(**fields: Any) -> None:
    """Bad input, naming the field, where PostgreSQL would refuse a NUL character (with a
    message naming none) after the request started, or JSON a number out of range."""
    try:
        refuse_unstorable(fields)
    except ValueError as error:
        raise InputError(str(error)) from None


def existing_request(*, session: Session, request_id: str) -> NotificationIds:
    query = select(Notification.id).where(Notification.request_id == request_id)
    return NotificationIds(session.scalars(query.order_by(Notification.id)))


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
