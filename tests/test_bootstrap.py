"""notify.bootstrap is the one composition root: the only code that turns settings into engines,
boto3 clients, senders and the template catalogue; pieces are built once and closed."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

from notify.bootstrap import Runtime, runtime, using
from notify.pacing import Pacer
from notify.rendering import UnknownTemplateError
from notify.senders import Senders
from notify.senders.memory import MemorySender
from notify.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
BUILDERS = {
    "load_settings",
    "aws_client",
    "make_engine",
    "open_database",
    "from_settings",
    "email_sender_from_settings",
    "TemplateCatalog",
    "client",  # boto3.client / session.client
}
# where a builder is defined (and may call its own helpers), plus the schema tool
ALLOWED = {
    "notify/bootstrap.py",
    "notify/settings.py",
    "notify/db.py",
    "notify/schema.py",
    "notify/senders/__init__.py",
    "notify/rendering.py",
    "notify/migrate.py",
}


def _calls(path: Path) -> list[tuple[int, str]]:
    """Calls of a builder by its name (`make_engine(...)`, `senders.from_settings(...)`,
    `boto3.client(...)`, `session.client(...)`); the runtime's own methods are the way in."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and _builds(node.func):
            found.append((node.lineno, ast.unparse(node.func)))
    return found


def _builds(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in BUILDERS
    if isinstance(func, ast.Attribute) and func.attr in BUILDERS:
        owner = ast.unparse(func.value)
        return owner.split(".")[0] in {"boto3", "senders", "database", "db", "settings"} or (
            "Session()" in owner
        )
    return False


def test_only_the_bootstrap_builds_engines_clients_senders_and_catalogues() -> None:
    offenders = []
    for package in ("notifyops", "flows", "tasks", "deployments", "notify"):
        for path in sorted((ROOT / package).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            if where in ALLOWED or "migrations" in path.parts:
                continue
            offenders += [f"{where}:{line}: {name}()" for line, name in _calls(path)]
    assert offenders == []


def test_handed_in_pieces_are_used_and_not_closed_by_the_runtime() -> None:
    memory = MemorySender()
    senders = Senders(email=memory, sms=memory)
    with using(Runtime(load_settings(sender="aws"), senders=senders)) as here:
        assert runtime() is here
        assert runtime().senders() is senders, "a fake handed in is what every caller gets"
    assert not memory.closed, "what a test hands in is the test's to close"


def test_built_pieces_are_built_once_and_closed_with_the_runtime() -> None:
    here = Runtime(load_settings(sender="memory"))
    first = here.senders()
    assert here.senders() is first and here.catalog() is here.catalog()
    here.close()
    assert first.email.closed  # type: ignore[attr-defined]


def test_a_piece_being_built_does_not_hold_up_the_others() -> None:
    """While one task builds a slow piece (the senders' boto3 clients), the enqueue beside it
    gets the catalogue at once."""
    here = Runtime(load_settings(sender="memory"))
    building, release = threading.Event(), threading.Event()

    def slow_pacers(_: Runtime) -> dict[str, Pacer]:
        building.set()
        release.wait(timeout=30)
        return {}

    slow = threading.Thread(target=here.pacers, args=(slow_pacers,))
    slow.start()
    try:
        assert building.wait(timeout=30)
        other = threading.Thread(target=here.catalog)
        other.start()
        other.join(timeout=10)
        assert not other.is_alive(), "the catalogue waited for the pacers being built"
    finally:
        release.set()
        slow.join()
    here.close()


def test_warming_leaves_a_piece_that_cannot_be_built_to_its_first_user() -> None:
    """A command warms the run's template beside the run's creation; a name that is no template
    is not the warm-up's error but the render's, which names it."""
    here = Runtime(load_settings(sender="memory"))
    here.warm(template="repair_assigned")
    assert "unit_number" in here.catalog().info("repair_assigned").required_variables
    here.warm(template="no_such_template")
    with pytest.raises(UnknownTemplateError, match="no_such_template"):
        here.catalog().render("no_such_template", {})
    here.close()


def test_a_block_restores_the_previous_runtime() -> None:
    outer = Runtime(load_settings(sender="memory"))
    with using(outer):
        with using(Runtime(load_settings(sender="memory"))) as inner:
            assert runtime() is inner
        assert runtime() is outer


def test_the_schema_check_knows_the_same_newest_migration_as_alembic() -> None:
    from alembic.script import ScriptDirectory

    from notify.migrate import alembic_config
    from notify.schema import head_revision

    alembic_head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head_revision() == alembic_head


def test_an_upgrade_from_an_older_revision_keeps_every_row(db_url: str) -> None:
    """An installation at 0005 with data upgrades to the newest revision with every delivery row
    and every operator action's row still there. On SQLite the batch copies of 0006
    (delivery_logs) and 0008 (notifications) dropped the old table with foreign keys on, and
    ON DELETE CASCADE emptied the delivery log and the actions' rows."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import func, select, text

    from notify.db import DeliveryLog, Notification, OperatorActionRow, make_engine
    from notify.migrate import alembic_config, upgrade_database

    statuses = ["pending", "pending_retry", "claimed", "sending", "sent", "delivered", "failed"]
    statuses += ["failed_permanent", "unknown", "skipped", "purged"]
    noon = datetime(2026, 11, 30, 12, tzinfo=UTC)
    engine = make_engine(db_url)
    try:
        command.downgrade(alembic_config(db_url), "0005")
        sqlite = engine.dialect.name == "sqlite"
        at = {"at": noon.replace(tzinfo=None) if sqlite else noon}
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO recipients (id, external_id, name, email, phone, timezone, "
                    "receive_email, receive_sms, created_at, updated_at) VALUES (1, 'tech:1', "
                    "'Ana', 'ana@example.com', '+12065550100', 'UTC', true, true, :at, :at)"
                ),
                at,
            )
            for number, status in enumerate(statuses, start=1):
                connection.execute(
                    text(
                        "INSERT INTO notifications (id, recipient_id, template_name, title, "
                        "message, priority, category, context, read, created_at) VALUES "
                        "(:id, 1, 'repair_assigned', 'Repair', 'm', 'high', 'repair', '{}', "
                        "false, :at)"
                    ),
                    {"id": number, **at},
                )
                for channel in ("email", "sms"):
                    connection.execute(
                        text(
                            "INSERT INTO delivery_logs (notification_id, channel, status, "
                            "decision, attempts, created_at, next_attempt_at) VALUES "
                            "(:id, :channel, :status, :decision, 1, :at, :at)"
                        ),
                        {"id": number, "channel": channel, "status": status, **at}
                        | {"decision": f"{channel}: send"},
                    )
            connection.execute(
                text(
                    "INSERT INTO operator_actions (id, action, applied, actor, filters, counts, "
                    "note, created_at) VALUES (1, 'redrive', true, 'ops', '{}', '{}', '', :at)"
                ),
                at,
            )
            connection.execute(
                text(
                    "INSERT INTO operator_action_rows (action_id, delivery_log_id, from_status) "
                    "SELECT 1, id, status FROM delivery_logs WHERE status = 'failed'"
                )
            )
        upgrade_database(db_url)
        with engine.connect() as connection:
            kept = connection.execute(
                select(DeliveryLog.status, func.count()).group_by(DeliveryLog.status)
            ).all()
            notifications = connection.execute(select(func.count(Notification.id))).scalar()
            action_rows = connection.execute(select(func.count()).select_from(OperatorActionRow))
            assert dict(kept) == dict.fromkeys(statuses, 2)
            assert notifications == len(statuses)
            assert action_rows.scalar() == 2
    finally:
        engine.dispose()
        upgrade_database(db_url)  # the next tests need the newest schema, whatever failed


def test_a_downgrade_the_data_does_not_allow_is_refused_and_changes_nothing(db_url: str) -> None:
    """Below 0006 a notification keeps one row per channel: an email fallback beside the
    notification's own (skipped) email row has no place. The downgrade failed with
    `IntegrityError: UNIQUE constraint failed`, and on SQLite, where Alembic committed each
    migration, left the database between revisions: 0016 to 0007 undone, the unique index of
    delivery_logs dropped, a `_alembic_tmp_delivery_logs` table behind."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import func, select, text

    from notify.actions.indexes import missing_indexes
    from notify.db import DeliveryLog, make_engine
    from notify.migrate import alembic_config, upgrade_database
    from notify.schema import current_revision, head_revision

    noon = datetime(2026, 12, 5, 12, tzinfo=UTC)
    engine = make_engine(db_url)
    at = {"at": noon.replace(tzinfo=None) if engine.dialect.name == "sqlite" else noon}
    rows = [  # (id, channel, status, replaces_id)
        (1, "sms", "failed_permanent", None),
        (2, "email", "skipped", None),  # email off in the recipient's preferences
        (3, "email", "sent", 1),  # the SMS's fallback
    ]
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO recipients (id, external_id, name, email, phone, timezone, "
                    "receive_email, receive_sms, created_at, updated_at) VALUES (1, 'tech:1', "
                    "'Ana', 'ana@example.com', '+12065550100', 'UTC', false, true, :at, :at)"
                ),
                at,
            )
            connection.execute(
                text(
                    "INSERT INTO notifications (id, recipient_id, template_name, title, message, "
                    "priority, category, context, read, created_at) VALUES (1, 1, "
                    "'repair_assigned', 'Repair', 'm', 'high', 'repair', '{}', false, :at)"
                ),
                at,
            )
            for row_id, channel, status, replaces in rows:
                connection.execute(
                    text(
                        "INSERT INTO delivery_logs (id, notification_id, channel, status, "
                        "decision, attempts, created_at, replaces_id) VALUES (:id, 1, :channel, "
                        ":status, 'x', 1, :at, :replaces)"
                    ),
                    {"id": row_id, "channel": channel, "status": status, "replaces": replaces} | at,
                )
        with pytest.raises(RuntimeError, match="cannot downgrade below 0006: 1 notifications"):
            command.downgrade(alembic_config(db_url), "0005")
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            assert missing_indexes(connection) == []
            linked = select(func.count()).where(DeliveryLog.replaces_id == 1)
            assert connection.execute(linked).scalar() == 1
            send_events = select(func.count(DeliveryLog.send_events))  # the 0013 column
            assert connection.execute(send_events).scalar() == 0
    finally:
        engine.dispose()
        upgrade_database(db_url)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_an_upgrade_gives_up_on_a_table_another_process_holds(db_url: str) -> None:
    """A delivery run's open transaction on a table the upgrade alters: the ALTER TABLE waited
    for it as long as it lasted, and every query on the table (the other deliverers' claims,
    health) waited behind the ALTER. The upgrade now gives up after its lock wait, naming the
    table, and changes nothing."""
    from alembic import command
    from sqlalchemy import text

    from notify.db import make_engine
    from notify.migrate import alembic_config, upgrade_database
    from notify.schema import DatabaseNotReady, current_revision

    command.downgrade(alembic_config(db_url), "0015")  # 0016 alters alerts
    engine = make_engine(db_url)
    try:
        with engine.connect() as run:
            run.execute(text("SELECT count(*) FROM alerts")).scalar()  # holds it until rollback
            with pytest.raises(DatabaseNotReady, match=r"waited 0\.2 s for the table alerts"):
                upgrade_database(db_url, lock_wait_s=0.2)
            run.rollback()
        assert current_revision(engine) == "0015"
    finally:
        engine.dispose()
        upgrade_database(db_url)


def test_a_sqlite_row_broken_before_the_upgrade_does_not_stop_it(tmp_path: Path) -> None:
    """A delivery row whose notification was deleted with foreign keys off (the sqlite3 shell's
    default) is no migration's doing. The check for rows the migrations broke ran after the
    commit: `db upgrade` said it failed (RuntimeError) with the database already at the newest
    revision, and said so again on every later run."""
    import sqlite3

    from alembic import command

    from notify.db import make_engine
    from notify.migrate import alembic_config, upgrade_database
    from notify.schema import current_revision, head_revision

    path = tmp_path / "notifyops.db"
    url = f"sqlite:///{path}"
    upgrade_database(url)
    command.downgrade(alembic_config(url), "0015")
    shell = sqlite3.connect(path)
    shell.execute(
        "INSERT INTO delivery_logs (notification_id, channel, status, decision, attempts, "
        "created_at) VALUES (999, 'sms', 'sent', 'x', 1, '2026-12-01 00:00:00')"
    )
    shell.commit()
    shell.close()
    assert upgrade_database(url) == head_revision()
    assert upgrade_database(url) == head_revision(), "and again, with nothing to do"
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
