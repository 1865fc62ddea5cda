"""The chaos suite: real deliverer processes, SIGKILL at random points, provider fault storms, a
PostgreSQL restart mid-batch; the fake provider's log (written before it answers) is the truth.

    python -m bench.chaos                 # the full run: 100 SIGKILL trials, 10 per storm
    python -m bench.chaos --trials 10     # the CI size (tests/test_chaos.py)
    python -m bench.chaos --json          # one JSON object on stdout

Scenarios (one table row each):

- `sigkill`: a deliverer process (tests/workers/chaos_worker.py: enqueue, then deliver through
  real boto3 SES v2 / SNS clients) is SIGKILLed after a random delay, stratified over the run so
  every step is hit; its journal (one line per step, written before the step) says where it was:
  enqueue, claim, send (mid-send), group-commit. The first four kills of every ten land in the
  enqueue, the first claim, the first call the provider accepted (its answer held back from the
  deliverer: the message is at the provider, its row `sending`) and the first group commit, each
  held open by its worker (each takes milliseconds: a random delay seldom lands in one). The
  provider injects a random mix of every fault at a few percent. A second process repeats the
  enqueue (same idempotency key), rescues the dead deliverer's leases and finishes.
- one storm per fault (`timeout_before`, `timeout_after`, `reset_after`, `throttle`,
  `server_error`, `forbidden`, and `outage`: 5xx on every call): the fault at a high rate for a
  few seconds while a deliverer works; at the storm's end no row may be `failed` (everything is
  sent or parked: pending, pending_retry, unknown, or held); then the provider recovers and the
  same process finishes.
- `outage_failover`: the outage again, with the SES SMTP failover configured (the fake provider
  also plays the SMTP endpoint): email goes through SMTP after 0.3 s of refusals and back to the
  API once a probe succeeds after the storm; `failover_kill`: the same, and the deliverer is
  SIGKILLed while email goes through SMTP; a second process (its failover starting from the API
  again) finishes. Neither may send an email on both paths.
- `pg-restart`: `notifyops deliver` (the CLI, a Prefect flow run on a local Prefect server, the
  aws sender pointed at the fake provider) against a throwaway PostgreSQL cluster
  (pg_createcluster) restarted mid-batch; deliver must exit non-zero with one line on stderr (or
  finish), then a second `notifyops deliver` finishes.

Counted per trial from the provider's log and the database: duplicates (a message accepted more
than once), lost (a message the provider never accepted whose row is gone, `sent`, or failed),
unknown rows, unknown rows whose message the provider does not have (allowed only when a fault cut
that request after it was written, or a kill/restart caught its row in `sending`: otherwise
"unexplained"), rows failed. Timings are on a shared, loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, make_url, text

from bench.common import (
    ADMIN_URL,
    HUGE,
    ROOT,
    TEMPLATE,
    add_recipients,
    external_ids,
    free_port,
    log,
    request_context,
    scratch_database,
)
from bench.fake_provider import FAULTS, FakeProvider, Faults, accepted
from notify.db import make_engine, transaction, utcnow
from notify.enqueue import SendRequest, enqueue
from notify.migrate import upgrade_database
from notify.rendering import TemplateCatalog
from notify.settings import Priority, load_settings

READ_TIMEOUT_S = 0.5  # the chaos workers' boto3 read timeout
HANG_S = 0.9  # a timeout fault holds the request this long: past READ_TIMEOUT_S
CLI_HANG_S = 10.5  # past the production client's 10 s read timeout (notifyops deliver)
STORM_S = 2.5
WORKER_DEADLINE_S = 120
# This checkout's CLI (not the installed `notifyops` script, which may be another checkout's).
CLI_MODULE = "notifyops.cli" if (ROOT / "notifyops" / "cli.py").exists() else "notify.cli"
LOG_RECORD = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| [A-Z]+ +\| ")
OPEN = ("pending", "pending_retry", "claimed", "sending")
PARKED = ("sent", "pending", "pending_retry", "unknown", "claimed", "sending")

HOLD_S = 0.5  # a held step's transaction stays open this long before its commit
# The first kills of every ten land in these steps, each held open HOLD_S by its worker: the
# enqueue transaction, the first claim, the first accepted call (before the deliverer hears its
# answer), the first group commit of outcomes.
HELD_STEPS = ("enqueue", "claim", "send", "group-commit")
# The journal's last step when the process died -> the phase of the kill.
PHASES = {
    "start": "enqueue",
    "enqueue": "enqueue",
    "enqueued": "claim",
    "rescue": "claim",
    "claim": "claim",
    "mark-sending": "mark-sending",
    "send": "mid-send",
    "send-held": "mid-send",
    "group-commit": "group-commit",
    "heartbeat": "heartbeat",
    "release": "release",
    "done": "after",
}
STORMS: dict[str, Faults] = {
    "timeout_before": Faults(timeout_before=0.2, hang_s=HANG_S),
    "timeout_after": Faults(timeout_after=0.2, hang_s=HANG_S),
    "reset_after": Faults(reset_after=0.3),
    "throttle": Faults(throttle=0.5),
    "server_error": Faults(server_error=0.5),
    "forbidden": Faults(forbidden=0.2),
    "outage": Faults(server_error=1.0),
    "outage_failover": Faults(server_error=1.0),  # with FAILOVER: email through SMTP
}
FAILOVER = {"after_s": 0.3, "probe_s": 0.5}  # the worker's SMTP failover (fast, for the suite)
FAILOVER_STORMS = ("outage_failover",)
COLUMNS = (
    "fault",
    "trials",
    "messages",
    "provider accepted",
    "duplicates",
    "lost",
    "unknown",
    "unknown-but-not-accepted",
    "unexplained unknown",
    "failed",
)


@dataclass(frozen=True)
class Size:
    """Recipients per trial (x 2 channels = messages)."""

    kill: int = 100
    storm: int = 60
    pg: int = 300


FULL = Size()
CI = Size(kill=50, storm=40, pg=200)  # tests/test_chaos.py: the same trials, smaller


@dataclass
class Trial:
    """One trial's counts (see the module docstring)."""

    scenario: str
    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    lost: int = 0
    unknown: int = 0
    unknown_not_accepted: int = 0
    unexplained: int = 0
    failed: int = 0
    left_open: int = 0
    failed_at_storm_end: int = 0
    phase: str | None = None
    at_kill: dict[str, int] = field(default_factory=dict)  # rows by status when it was killed
    findings: list[str] = field(default_factory=list)  # exit codes that hide what was left
    runs: list[dict[str, Any]] = field(default_factory=list)  # each `notifyops deliver`
    exit_codes: list[int] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    faults: str = ""
    # Messages the provider accepted that no row asks for, and rows beyond the messages asked
    # for: either one is a message sent (or owed) that nobody requested.
    strays: list[str] = field(default_factory=list)
    smtp_accepted: int = 0  # emails the failover sent through SMTP


@dataclass
class Row:
    """Trials of one scenario, added up."""

    fault: str
    trials: int = 0
    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    lost: int = 0
    unknown: int = 0
    unknown_not_accepted: int = 0
    unexplained: int = 0
    failed: int = 0
    left_open: int = 0
    failed_at_storm_end: int = 0
    dishonest_exits: int = 0
    strays: list[str] = field(default_factory=list)
    phases: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    smtp_accepted: int = 0

    def add(self, trial: Trial) -> None:
        self.trials += 1
        for name in (
            "messages",
            "accepted",
            "duplicates",
            "lost",
            "unknown",
            "unknown_not_accepted",
            "unexplained",
            "failed",
            "left_open",
            "failed_at_storm_end",
            "smtp_accepted",
        ):
            setattr(self, name, getattr(self, name) + getattr(trial, name))
        self.dishonest_exits += len(trial.findings)
        self.notes += trial.findings
        self.strays += trial.strays
        if trial.phase:
            self.phases[trial.phase] += 1

    @property
    def holds(self) -> bool:
        return not (
            self.duplicates
            or self.lost
            or self.unexplained
            or self.failed
            or self.left_open
            or self.failed_at_storm_end
            or self.dishonest_exits
            or self.strays
        )

    def cells(self) -> list[str]:
        values = (
            self.trials,
            self.messages,
            self.accepted,
            self.duplicates,
            self.lost,
            self.unknown,
            self.unknown_not_accepted,
            self.unexplained,
            self.failed,
        )
        return [self.fault, *(f"{value:,}" for value in values)]


# --- the database -----


def reset_outbox(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("TRUNCATE notifications, delivery_logs, alerts, suppressions CASCADE")
        )


def prepare(url: str, recipients: int) -> Engine:
    upgrade_database(url)
    engine = make_engine(url)
    add_recipients(engine, 0, recipients)
    return engine


def rows(engine: Engine) -> list[tuple[str, str, str]]:
    """(channel, address, status) of every delivery row."""
    query = text(
        "SELECT channel, COALESCE(recipient_email, recipient_phone), status FROM delivery_logs"
    )
    with engine.connect() as connection:
        return [(r[0], r[1], r[2]) for r in connection.execute(query)]


def connection_name(workdir: Path, owner: str) -> str:
    """The PostgreSQL `application_name` of one worker's connections."""
    return f"chaos {workdir.name} {owner}"[:63]


def named_connections(url: str, name: str) -> str:
    if not url.startswith("postgresql"):
        return url
    return make_url(url).update_query_dict({"application_name": name}).render_as_string(False)


def wait_backends_gone(engine: Engine, name: str, most_s: float = 30.0) -> None:
    """After a SIGKILL: until PostgreSQL has ended the killed worker's sessions. A COMMIT the
    worker had already written to its socket is still carried out after the kill (the backend
    reads it, commits, then reads the end of the stream), so rows read before then may not yet
    show a claim the worker made: the accounting would find those rows `unknown` later with no
    claim seen at the kill (seen once in a CI run: 1 such row of 80)."""
    if engine.dialect.name != "postgresql":
        return
    query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
    deadline = time.monotonic() + most_s
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if not connection.execute(query, {"name": name}).scalar_one():
                return
        time.sleep(0.02)
    raise TimeoutError(f"the sessions of {name!r} outlived its process by {most_s:.0f} s")


def kill_worker(
    process: subprocess.Popen[bytes], engine: Engine, workdir: Path, owner: str
) -> None:
    """SIGKILL a worker started with `worker_cfg(..., workdir, owner)`; return once it and its
    database sessions are gone, so what the tables show is all it did."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    wait_backends_gone(engine, connection_name(workdir, owner))


def held(engine: Engine) -> set[tuple[str, str]]:
    """Messages whose rows are `sending` now (a kill here may leave them `unknown`)."""
    return {(c, a) for c, a, s in rows(engine) if s == "sending"}


def status_counts(engine: Engine) -> Counter[str]:
    return Counter(status for _, _, status in rows(engine))


def enqueue_now(engine: Engine, url: str, recipients: int, tag: str) -> None:
    settings = load_settings(
        database_url=url, sender="memory", loop_threshold=HUGE, sms_daily_cap_usd=HUGE
    )
    request = SendRequest(
        template=TEMPLATE,
        to=external_ids(recipients),
        context=request_context(tag),
        priority=Priority.urgent,
        idempotency_key=f"chaos-{tag}",
    )
    with transaction(engine) as session:
        enqueue(
            session=session,
            request=request,
            catalog=TemplateCatalog(),
            settings=settings,
            now=utcnow(),
        )


# --- accounting -----


def account(
    trial: Trial,
    engine: Engine,
    log_path: Path,
    expected: int,
    cuts: Sequence[tuple[str, str, str]],
    in_flight: set[tuple[str, str]],
) -> Trial:
    """Fill in the counts from the provider's log and the rows."""
    got = accepted(log_path)
    cut = {(channel, address) for _, channel, address in cuts}
    table = rows(engine)
    trial.messages = expected
    trial.accepted = sum(got.values())
    trial.duplicates = sum(n - 1 for n in got.values() if n > 1)
    trial.lost = max(0, expected - len(table))
    keys = Counter((channel, address) for channel, address, _ in table)
    trial.strays += [f"accepted without a row: {c} {a}" for c, a in got if (c, a) not in keys]
    trial.strays += [
        f"{n} rows for {c} {a}: {sorted(s for ch, ad, s in table if (ch, ad) == (c, a))}"
        for (c, a), n in keys.items()
        if n > 1
    ]
    if len(table) > expected:
        trial.strays.append(f"{len(table)} rows for {expected} messages")
    trial.strays = [f"{trial.scenario} ({trial.phase or trial.faults}): {s}" for s in trial.strays]
    for channel, address, status in table:
        key = (channel, address)
        trial.lost += key not in got and status not in ("unknown", *OPEN)
        trial.failed += status in ("failed", "failed_permanent")
        trial.left_open += status in OPEN
        if status == "unknown":
            trial.unknown += 1
            if key not in got:
                trial.unknown_not_accepted += 1
                trial.unexplained += key not in cut and key not in in_flight
    return trial


# --- processes -----


def worker(cfg: dict[str, Any]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tests.workers.chaos_worker", json.dumps(cfg)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish(process: subprocess.Popen[bytes], what: str) -> None:
    _, err = process.communicate(timeout=WORKER_DEADLINE_S + 60)
    if process.returncode != 0:
        raise RuntimeError(f"{what} exited {process.returncode}: {err.decode()[-2000:]}")


def worker_cfg(url: str, endpoint: str, workdir: Path, owner: str, **extra: Any) -> dict[str, Any]:
    return {
        "database_url": named_connections(url, connection_name(workdir, owner)),
        "owner": owner,
        "endpoint": endpoint,
        "journal": str(workdir / f"{owner}.journal"),
        "batch": 25,
        "concurrency": 4,
        "window": 8,
        "read_timeout_s": READ_TIMEOUT_S,
        "deadline_s": WORKER_DEADLINE_S,
        **extra,
    }


def last_step(journal: Path, ignoring: Collection[str] = ()) -> str:
    """The journal's last step, leaving out the `ignoring` ones."""
    lines = journal.read_text().splitlines() if journal.exists() else []
    steps = [line.split()[-1] for line in lines]
    kept = [step for step in steps if step not in ignoring]
    return kept[-1] if kept else "start"


def mixed_faults(rng: random.Random) -> Faults:
    """A few percent of every fault (a SIGKILL trial's background noise)."""
    rates = {name: round(rng.uniform(0.0, 0.04), 3) for name in FAULTS}
    return Faults(**rates, latency_s=0.004, hang_s=HANG_S)


# --- scenarios -----


def calibrate(url: str, engine: Engine, workdir: Path, recipients: int) -> dict[str, float]:
    """One undisturbed run: seconds from the worker's start (imports done) to the first line of
    each journaled step (`enqueue`, `enqueued`, `claim`, `group-commit`, `done`, ...)."""
    reset_outbox(engine)
    trial_dir = workdir / "calibrate"
    trial_dir.mkdir()
    with provider(trial_dir, Faults(latency_s=0.004)) as fake:
        cfg = worker_cfg(url, fake.url, trial_dir, "calibrate")
        cfg["enqueue"] = {"recipients": recipients, "key": "chaos-cal", "tag": "cal"}
        finish(worker(cfg), "calibration worker")
    steps: dict[str, float] = {}
    for line in Path(cfg["journal"]).read_text().splitlines():
        at, step = line.split()
        steps.setdefault(step, float(at))
    begun = steps["start"]
    return {step: at - begun for step, at in steps.items()}


def sigkill_trial(
    url: str,
    engine: Engine,
    workdir: Path,
    n: int,
    delay: float | None,
    rng: random.Random,
    recipients: int,
) -> Trial:
    """`delay`: seconds from the worker's start to the kill; None: the kill lands in the step
    the worker holds open (`held_step`)."""
    reset_outbox(engine)
    trial_dir = workdir / f"kill-{n}"
    trial_dir.mkdir()
    faults = mixed_faults(rng)
    spec = {"recipients": recipients, "key": f"chaos-kill-{n}", "tag": f"kill-{n}"}
    step = held_step(n)
    doomed_spec = {**spec, "hold_s": HOLD_S if step == "enqueue" else 0.0}
    holds = {step: HOLD_S} if step and step != "enqueue" else {}  # held by its worker
    with provider(trial_dir, faults, seed=n) as fake:
        cfg = worker_cfg(url, fake.url, trial_dir, "doomed", enqueue=doomed_spec)
        doomed = worker({**cfg, "holds": holds})
        _wait_started(trial_dir / "doomed.journal", doomed)
        if step is None:
            time.sleep(delay or 0.0)
        else:
            _wait_holding(trial_dir / "doomed.journal", step, doomed)
            time.sleep(HOLD_S / 2)
        kill_worker(doomed, engine, trial_dir, "doomed")
        phase = _kill_phase(trial_dir / "doomed.journal", step)
        at_kill = dict(status_counts(engine))
        in_flight = held(engine)
        cfg = worker_cfg(url, fake.url, trial_dir, "rescuer", enqueue=spec, rescue_dead=True)
        finish(worker(cfg), "rescuing worker")
        trial = Trial("sigkill", phase=phase, at_kill=at_kill, faults=faults.describe())
        return account(trial, engine, fake.log_path, 2 * recipients, fake.cuts, in_flight)


def storm_trial(
    url: str, engine: Engine, workdir: Path, name: str, n: int, recipients: int
) -> Trial:
    reset_outbox(engine)
    trial_dir = workdir / f"{name}-{n}"
    trial_dir.mkdir()
    storm = STORMS[name]
    spec = {"recipients": recipients, "key": f"chaos-{name}-{n}", "tag": f"{name}-{n}"}
    failover = name in FAILOVER_STORMS
    with provider(trial_dir, storm, seed=n, smtp=failover) as fake:
        extra = {"smtp": {"port": fake.smtp_port, **FAILOVER}} if failover else {}
        process = worker(worker_cfg(url, fake.url, trial_dir, "storm", enqueue=spec, **extra))
        _wait_for_rows(engine, process)
        time.sleep(STORM_S)
        at_end = status_counts(engine)
        fake.faults = Faults(latency_s=0.004, hang_s=HANG_S)
        finish(process, f"{name} worker")
        trial = Trial(name, faults=storm.describe(), smtp_accepted=fake.calls["smtp"])
        trial.failed_at_storm_end = at_end["failed"] + at_end["failed_permanent"]
        return account(trial, engine, fake.log_path, 2 * recipients, fake.cuts, set())


def failover_kill_trial(url: str, engine: Engine, workdir: Path, n: int, recipients: int) -> Trial:
    """The outage with the SMTP failover on; SIGKILL once email has been going through SMTP for
    a moment; the provider recovers; a second process (its failover back at the API) finishes."""
    reset_outbox(engine)
    trial_dir = workdir / f"failover-kill-{n}"
    trial_dir.mkdir()
    spec = {"recipients": recipients, "key": f"chaos-failover-kill-{n}", "tag": f"fk-{n}"}
    with provider(trial_dir, STORMS["outage"], seed=n, smtp=True) as fake:
        smtp = {"smtp": {"port": fake.smtp_port, **FAILOVER}}
        doomed = worker(worker_cfg(url, fake.url, trial_dir, "doomed", enqueue=spec, **smtp))
        _wait_for_smtp(fake, doomed)
        kill_worker(doomed, engine, trial_dir, "doomed")
        at_kill = dict(status_counts(engine))
        in_flight = held(engine)
        fake.faults = Faults(latency_s=0.004, hang_s=HANG_S)
        cfg = worker_cfg(
            url, fake.url, trial_dir, "rescuer", enqueue=spec, rescue_dead=True, **smtp
        )
        finish(worker(cfg), "rescuing worker")
        trial = Trial("failover_kill", phase="smtp", at_kill=at_kill, faults="outage, failover")
        trial.smtp_accepted = fake.calls["smtp"]
        return account(trial, engine, fake.log_path, 2 * recipients, fake.cuts, in_flight)


def _wait_for_smtp(fake: FakeProvider, process: subprocess.Popen[bytes], least: int = 10) -> None:
    """Until the failover has sent `least` emails through SMTP (then the kill lands among them)."""
    deadline = time.monotonic() + 60
    while fake.calls["smtp"] < least and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)


def _wait_started(journal: Path, process: subprocess.Popen[bytes]) -> None:
    """Until the worker has imported everything (the kill delay counts from there: start-up
    time varies too much on a loaded machine to aim at a step from the spawn)."""
    deadline = time.monotonic() + 60
    while not journal.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)


def _wait_holding(journal: Path, step: str, process: subprocess.Popen[bytes]) -> None:
    """Until the worker holds `step` open: its journal has the enqueue's line (the hold is the
    enqueue's last act), a `send-held` line (a sender thread holds an accepted call's answer),
    or a claim's or group commit's second line (written once the first such statement ran, as
    its hold begins). Timing it from a calibration run missed by more than the hold on a loaded
    machine."""
    if step == "send":
        step = "send-held"
    lines = 2 if step in ("claim", "group-commit") else 1
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        marks = journal.read_text().splitlines() if journal.exists() else []
        if sum(line.split()[-1] == step for line in marks) >= lines:
            return
        time.sleep(0.005)


def _kill_phase(journal: Path, step: str | None) -> str:
    """Where the kill landed, from the dead worker's journal. A held step holds one thread only:
    while a claim or group commit is held the sender threads go on with the rows already handed
    to them (a window's worth, more than SETTLE_S clears on a slow machine), so their `send`
    lines do not move the kill out of it; while a send is held the deliverer goes on claiming
    and committing, so the held call's `send-held` line decides (the kill came inside its
    hold)."""
    if step == "send":
        marks = journal.read_text().split() if journal.exists() else []
        return PHASES["send-held"] if "send-held" in marks else PHASES[last_step(journal)]
    return PHASES[last_step(journal, ("send",) if step else ())]


def _wait_for_rows(engine: Engine, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not rows(engine) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


@contextmanager
def provider(
    trial_dir: Path, faults: Faults, seed: int | None = None, smtp: bool = False
) -> Iterator[FakeProvider]:
    fake = FakeProvider(trial_dir / "accepted.jsonl", faults, seed, smtp=smtp)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


# --- a throwaway PostgreSQL cluster, restarted under `notifyops deliver` -----


@contextmanager
def throwaway_cluster() -> Iterator[tuple[str, str]]:
    """(cluster name, database URL) of a new PostgreSQL 15 cluster, dropped on the way out."""
    name, port = f"chaos{os.getpid()}", free_port()
    subprocess.run(
        ["pg_createcluster", "15", name, "-p", str(port), "--", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    try:
        pg_ctl(name, "start")
        admin = create_engine(
            f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as connection:
            connection.execute(text("CREATE DATABASE chaos"))
        admin.dispose()
        yield name, f"postgresql+psycopg2://postgres@127.0.0.1:{port}/chaos"
    finally:
        subprocess.run(["pg_dropcluster", "--stop", "15", name], check=False, capture_output=True)


def pg_ctl(name: str, action: str) -> None:
    subprocess.run(["pg_ctlcluster", "15", name, action], check=True, capture_output=True)


def cli(url: str, endpoint: str, prefect_env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`notifyops deliver` as an operator runs it, the aws sender pointed at the fake provider."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")}
    env.update(prefect_env)
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "NOTIFY_DATABASE_URL": url,
            "NOTIFY_SENDER": "aws",
            "NOTIFY_SES_RATE": "500",
            "NOTIFY_SNS_RATE": "500",
            "NOTIFY_BATCH_SIZE": "200",
            "NOTIFY_SEND_WINDOW": "32",
            "NOTIFY_LEASE_SECONDS": "5",
            "NOTIFY_RETRY_BASE_S": "0.2",
            "NOTIFY_RETRY_MAX_S": "1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "chaos",
            "AWS_SECRET_ACCESS_KEY": "chaos",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", CLI_MODULE, "deliver", "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def pg_restart_trial(
    cluster: str,
    url: str,
    workdir: Path,
    n: int,
    prefect_env: dict[str, str],
    rng: random.Random,
    recipients: int,
) -> Trial:
    engine = make_engine(url)
    reset_outbox(engine)
    enqueue_now(engine, url, recipients, f"pg-{n}")
    trial_dir = workdir / f"pg-{n}"
    trial_dir.mkdir()
    # Answered errors only: every `unknown` row then comes from the restart, and the exit codes
    # say what the restart did.
    faults = Faults(throttle=0.05, server_error=0.03, latency_s=0.01)
    trial = Trial("pg-restart", faults=faults.describe())
    with provider(trial_dir, faults, seed=n) as fake:
        deliver = cli(url, fake.url, prefect_env)
        restart_after = rng.randint(20, 2 * recipients * 3 // 4)
        deadline = time.monotonic() + 180
        while sum(accepted(fake.log_path).values()) < restart_after and deliver.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        pg_ctl(cluster, "restart")
        trial.phase = f"restart after {sum(accepted(fake.log_path).values())} accepted"
        trial.stderr_lines = _cli_done(deliver, trial, engine, "restarted run")
        in_flight = {(c, a) for c, a, s in rows(engine) if s in ("sending", "claimed")}
        time.sleep(5.5)  # NOTIFY_LEASE_SECONDS: the next run rescues the dead run's rows
        for attempt in range(5):
            _cli_done(cli(url, fake.url, prefect_env), trial, engine, f"run {attempt + 2}")
            if not [s for _, _, s in rows(engine) if s in OPEN]:
                break
        account(trial, engine, fake.log_path, 2 * recipients, fake.cuts, in_flight)
    engine.dispose()
    return trial


def _cli_done(
    process: subprocess.Popen[bytes], trial: Trial, engine: Engine, what: str
) -> list[str]:
    """Wait for a `notifyops deliver --json`; note where its exit code or output hides what it
    left (exit 0 with rows held or made `unknown`; a failure without one clear line)."""
    try:
        out, err = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
    code = process.returncode
    trial.exit_codes.append(code)
    stderr = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    errors = [line for line in stderr if not LOG_RECORD.search(line)]
    summary = _summary(out.decode(errors="replace"))
    engine.dispose()  # the cluster may have restarted under the pool
    held_now = sum(1 for _, _, s in rows(engine) if s in ("claimed", "sending"))
    problems = []
    if code == 0 and held_now:
        problems.append(f"exit 0 with {held_now} rows still claimed or sending")
    if code == 0 and summary.get("rescued_unknown"):
        problems.append(f"exit 0 though its rescue made {summary['rescued_unknown']} rows unknown")
    if code != 0 and len(errors) != 1 and not summary:
        problems.append(f"exit {code} with {len(errors)} error lines on stderr")
    if held_now and not errors and not summary.get("stopped"):
        problems.append(
            f"left {held_now} rows claimed or sending (a dead batch) and said nothing "
            f"(remaining_due {summary.get('remaining_due')}, no error line, not stopped)"
        )
    trial.findings += [f"{what}: {p}" for p in problems]
    trial.runs.append(
        {"what": what, "exit": code, "stderr": errors[-3:], "summary": summary, "held": held_now}
    )
    return stderr


def _summary(stdout: str) -> dict[str, Any]:
    start = stdout.find("{")
    try:
        found = json.loads(stdout[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


# --- the run -----


def held_step(n: int) -> str | None:
    """The step the n-th kill's worker holds open (None: a kill spread over the delivery)."""
    return HELD_STEPS[n % 10] if n % 10 < len(HELD_STEPS) else None


def kill_delays(count: int, steps: Mapping[str, float]) -> list[float | None]:
    """Stratified: the first kills of every ten land in a held step (HELD_STEPS: None here, the
    trial waits for the worker's journal to say it holds the step), the rest are spread over the
    delivery (seconds from the worker's start). `steps`: the calibration run's first time of
    each step."""
    enqueued, done = steps["enqueued"], steps["done"]
    spread = 10 - len(HELD_STEPS)
    delays: list[float | None] = []
    for n in range(count):
        if held_step(n):
            delays.append(None)
            continue
        span = (done - enqueued) * 1.05
        stratum = (n % 10 - len(HELD_STEPS)) / spread
        low = enqueued + span * stratum
        high = enqueued + span * (stratum + 1 / spread)
        delays.append(random.uniform(max(0.0, low), high))
    return delays


SCENARIOS = ("sigkill", "storms", "pg-restart")


def run(
    trials: int,
    seed: int = 11,
    with_cli: bool = True,
    admin_url: str = ADMIN_URL,
    size: Size = FULL,
    only: Sequence[str] = SCENARIOS,
) -> list[Row]:
    rng = random.Random(seed)
    random.seed(seed)
    table: dict[str, Row] = {}

    def add(trial: Trial) -> None:
        table.setdefault(trial.scenario, Row(trial.scenario)).add(trial)

    with (
        tempfile.TemporaryDirectory(prefix="chaos-") as tmp,
        scratch_database(admin_url, prefix="notifyops_chaos") as url,
    ):
        workdir = Path(tmp)
        engine = prepare(url, max(size.kill, size.storm))
        if "sigkill" in only:
            _sigkill_trials(url, engine, workdir, trials, rng, size.kill, add)
        if "storms" in only:
            _storm_trials(url, engine, workdir, trials, size.storm, add)
        engine.dispose()
        if with_cli and "pg-restart" in only:
            count = max(1, trials // 20)
            for trial in pg_restart_trials(workdir, count, rng, admin_url, size.pg):
                add(trial)
    return list(table.values())


def _sigkill_trials(
    url: str,
    engine: Engine,
    workdir: Path,
    trials: int,
    rng: random.Random,
    recipients: int,
    add: Callable[[Trial], None],
) -> None:
    steps = calibrate(url, engine, workdir, recipients)
    log(
        f"chaos: calibration run: enqueue at {steps['enqueue']:.2f} s, delivering at "
        f"{steps['enqueued']:.2f} s, first group commit at {steps['group-commit']:.2f} s, "
        f"done at {steps['done']:.2f} s"
    )
    for n, delay in enumerate(kill_delays(trials, steps)):
        trial = sigkill_trial(url, engine, workdir, n, delay, rng, recipients)
        when = f"at {delay:.2f} s" if delay is not None else f"holding its {held_step(n)}"
        log(
            f"chaos: sigkill {n + 1}/{trials} {when} ({trial.phase}, rows then: "
            f"{trial.at_kill}): {_brief(trial)}"
        )
        add(trial)


def _storm_trials(
    url: str,
    engine: Engine,
    workdir: Path,
    trials: int,
    recipients: int,
    add: Callable[[Trial], None],
) -> None:
    for name in STORMS:
        for n in range(max(1, trials // 10)):
            trial = storm_trial(url, engine, workdir, name, n, recipients)
            log(f"chaos: storm {name} {n + 1}: {_brief(trial)}")
            add(trial)
    for n in range(max(1, trials // 10)):
        trial = failover_kill_trial(url, engine, workdir, n, recipients)
        log(f"chaos: failover kill {n + 1} (rows then: {trial.at_kill}): {_brief(trial)}")
        add(trial)


def pg_restart_trials(
    workdir: Path, count: int, rng: random.Random, admin_url: str, recipients: int
) -> list[Trial]:
    from bench.prefect_server import prefect_server

    done = []
    with prefect_server(workdir, admin_url) as server, throwaway_cluster() as (cluster, url):
        prepare(url, recipients).dispose()
        for n in range(count):
            trial = pg_restart_trial(cluster, url, workdir, n, server.env, rng, recipients)
            log(
                f"chaos: pg-restart {n + 1}/{count} ({trial.phase}): {_brief(trial)}; "
                f"exit codes {trial.exit_codes}; {trial.findings or 'exits honest'}"
            )
            for one in trial.runs:
                log(f"chaos:   {json.dumps(one)[:600]}")
            done.append(trial)
    return done


def _brief(trial: Trial) -> str:
    return (
        f"{trial.accepted}/{trial.messages} accepted, {trial.duplicates} dup, {trial.lost} lost, "
        f"{trial.unknown} unknown ({trial.unknown_not_accepted} not accepted, "
        f"{trial.unexplained} unexplained), {trial.failed} failed, {trial.left_open} open"
        + (f"; {trial.smtp_accepted} emails through SMTP" if trial.smtp_accepted else "")
    )


def markdown(table: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in table]
    return "\n".join(lines)


def as_json(table: Sequence[Row]) -> dict[str, Any]:
    return {
        "rows": [{**asdict(row), "phases": dict(row.phases), "holds": row.holds} for row in table],
        "holds": all(row.holds for row in table),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="SIGKILL trials (default 100)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--no-cli", action="store_true", help="skip the notifyops deliver trials")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    table = run(args.trials, args.seed, with_cli=not args.no_cli, only=only)
    if args.json:
        print(json.dumps({**as_json(table), "seconds": round(time.perf_counter() - started, 1)}))
    else:
        print(markdown(table))
        for row in table:
            if row.phases:
                print(f"{row.fault} kill phases: {dict(sorted(row.phases.items()))}")
            for note in row.notes:
                print(f"{row.fault}: {note}")
            for stray in row.strays:
                print(f"{row.fault}: {stray}")
        print(
            f"holds: {all(row.holds for row in table)} "
            f"({time.perf_counter() - started:.0f} s on a shared machine)"
        )
    return 0 if all(row.holds for row in table) else 1


if __name__ == "__main__":
    sys.exit(main())
