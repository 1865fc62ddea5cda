"""The composition root: settings become the engine, the template catalogue, the senders, the AWS
clients and the pacers here, once per process, and nowhere else.

Everything above (the CLI, the Prefect tasks, the benchmark) asks `runtime()` for its pieces.
Tests and benchmarks hand in fakes by building a `Runtime` with the pieces they want and
installing it for a block (`with using(Runtime(settings, senders=memory)): ...`); nothing is
patched. Pieces are built on first use (a `--help` never opens a database or imports boto3) and
`close()` releases what was opened (SMTP connections, boto3 connection pools, engine pools).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from notify.settings import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from notify.fallback import FallbackPolicy
    from notify.pacing import Pacer
    from notify.rendering import TemplateCatalog
    from notify.senders import Senders

PacerFactory = Callable[["Runtime"], Mapping[str, "Pacer"]]
_PIECES = ("engine", "catalog", "fallback", "senders", "clients", "pacers")


class Runtime:
    """One process's pieces, built lazily from `settings` unless handed in."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        catalog: TemplateCatalog | None = None,
        senders: Senders | None = None,
        clients: Mapping[str, Any] | None = None,
        pacers: Mapping[str, Pacer] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        # what the checks take for the present (a run without `as_of`); tests hand in a fixed one
        self._clock = clock
        self._engine = engine
        self._catalog = catalog
        self._senders = senders
        self._clients: dict[tuple[str, bool], Any] = {
            (name, retries): client
            for name, client in (clients or {}).items()
            for retries in (False, True)
        }
        self._pacers = pacers
        self._fallback: FallbackPolicy | None = None
        # set when the process is asked to stop (a command's Ctrl-C or SIGTERM): its deliverers
        # finish the calls in flight, record them and give the rest back (notify.delivery)
        self.interrupted = threading.Event()
        # a lock per piece: building the senders (boto3 clients, ~0.25 s) in one task must not
        # hold up another that only needs the engine (the enqueue beside it)
        self._locks = {piece: threading.RLock() for piece in _PIECES}
        self._owned_lock = threading.Lock()
        self._owned: list[Callable[[], None]] = []

    def now(self) -> datetime:
        """The present, as the monitoring checks see it: the clock handed in, else UTC now."""
        return self._clock() if self._clock is not None else datetime.now(UTC)

    def engine(self) -> Engine:
        """The database engine, after checking the schema is at the newest migration."""
        with self._locks["engine"]:
            if self._engine is None:
                from notify.schema import open_database

                self._engine = open_database(self.settings.database_url)
                self._own(self._engine.dispose)
            return self._engine

    def catalog(self) -> TemplateCatalog:
        """Built-in templates plus NOTIFY_TEMPLATES_DIR."""
        with self._locks["catalog"]:
            if self._catalog is None:
                from notify.rendering import TemplateCatalog

                self._catalog = TemplateCatalog(self.settings.templates_dir)
            return self._catalog

    def fallback_policy(self) -> FallbackPolicy:
        """Which templates let an SMS that cannot go fall back to email (notify.fallback)."""
        with self._locks["fallback"]:
            if self._fallback is None:
                from notify.fallback import FallbackPolicy

                self._fallback = FallbackPolicy.of(self.catalog())
            return self._fallback

    def senders(self) -> Senders:
        """The email and SMS senders NOTIFY_SENDER names (one set per process, thread-safe); with
        NOTIFY_SENDER=aws and SMTP credentials, email fails over to SES SMTP while the SES API is
        down (notify.senders.failover; its clock kept in the database)."""
        with self._locks["senders"]:
            if self._senders is None:
                from notify.db import utcnow
                from notify.fallback import MarkMemory
                from notify.senders import from_settings, with_email_failover

                built = from_settings(self.settings, client=self.aws_client)
                self._senders = with_email_failover(
                    built, self.settings, clock=utcnow, memory=MarkMemory(self.engine)
                )
                self._own(self._senders.close)
            return self._senders

    def aws_client(self, service: str, *, retries: bool = False) -> Any:
        """A boto3 client: send clients make exactly one HTTP attempt; `retries` for reads."""
        key = (service, bool(retries))
        with self._locks["clients"]:
            if key not in self._clients:
                from notify.senders import aws_client

                client = aws_client(service, self.settings, retries=retries)
                self._clients[key] = client
                self._own(client.close)
            return self._clients[key]

    def pacers(self, build: PacerFactory | None = None) -> Mapping[str, Pacer]:
        """Provider token buckets shared by every deliverer of this process.

        `build` (the Prefect layer's global rate limits) is used the first time; without it each
        process paces itself locally."""
        with self._locks["pacers"]:
            if self._pacers is None:
                self._pacers = build(self) if build else self._local_pacers()
            return self._pacers

    def provider_rates(self) -> dict[str, float]:
        """Sends per second per channel: NOTIFY_SES_RATE (or SES's own: `auto`), NOTIFY_SNS_RATE."""
        from notify.senders import ses_rate

        email = ses_rate(self.settings, lambda: self.aws_client("ses", retries=True))
        return {"email": email, "sms": self.settings.sns_rate}

    def _local_pacers(self) -> dict[str, Pacer]:
        from notify.pacing import TokenBucket

        return {channel: TokenBucket(rate) for channel, rate in self.provider_rates().items()}

    def warm(
        self,
        *,
        senders: bool = False,
        pacers: PacerFactory | None = None,
        template: str | None = None,
    ) -> None:
        """Build the engine, the catalogue, the ORM mappings and (`senders`) the senders now, and
        the pacers with `pacers`: a command does it in a thread while Prefect creates its run, so
        the run's first tasks do not pay for it (the pacers' check for global rate limits: an API
        call). `template`: compile that template too (its parse and variable analysis, 50-65 ms
        the first time in a process). A piece that cannot be built is left to its first user,
        who gets the error."""
        from sqlalchemy.orm import configure_mappers

        steps: list[Callable[[], object]] = [self.engine, configure_mappers, self.catalog]
        if template:
            steps.append(lambda: self.catalog().info(template))
        if senders:
            steps.append(self.senders)
        if pacers is not None:
            steps.append(lambda: self.pacers(pacers))
        for build in steps:
            with suppress(Exception):
                build()

    def _own(self, release: Callable[[], None]) -> None:
        with self._owned_lock:
            self._owned.append(release)

    def close(self) -> None:
        """Release what this runtime opened (not what was handed in)."""
        with self._owned_lock:
            owned, self._owned = self._owned, []
        for release in reversed(owned):
            with suppress(Exception):  # closing must not hide the error that ended the run
                release()


_current: Runtime | None = None
_current_lock = threading.Lock()


def runtime() -> Runtime:
    """This process's runtime: the installed one, or one built from the environment."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Runtime(load_settings())
        return _current


def install(new: Runtime) -> Runtime | None:
    """Make `new` this process's runtime; returns the one it replaces (not closed)."""
    global _current
    with _current_lock:
        previous, _current = _current, new
    return previous


@contextmanager
def using(new: Runtime) -> Iterator[Runtime]:
    """`new` for the duration of a block (tests, benchmarks); then the previous one again."""
    previous = install(new)
    try:
        yield new
    finally:
        if previous is None:
            _clear()
        else:
            install(previous)
        new.close()


def _clear() -> None:
    global _current
    with _current_lock:
        _current = None


def reset() -> None:
    """Close this process's runtime; the next `runtime()` reads the environment again."""
    global _current
    with _current_lock:
        previous, _current = _current, None
    if previous is not None:
        previous.close()


def settings() -> Settings:
    """The process's settings (validated once; a bad value raises SettingsError)."""
    return runtime().settings


@atexit.register
def _close_at_exit() -> None:
    if _current is not None:
        _current.close()
