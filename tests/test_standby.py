"""`notifyops standby`: commands run in a fork of a process that has everything loaded.

Real processes throughout: a standby started with `python -m notifyops standby`, and commands
started as a user starts them, each with its own environment, stdout, stderr and exit status."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from notify.migrate import upgrade_database
from notifyops.standby import CHANGED

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 120


@dataclass
class Standby:
    process: subprocess.Popen[str]
    log: Path
    env: dict[str, str]

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def ran(self, command: str) -> bool:
        return any(line.endswith(f"runs `notifyops {command}`") for line in self.lines())

    def wait_ready(self, times: int = 1) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while sum("standby: ready on" in line for line in self.lines()) < times:
            assert self.process.poll() is None, "\n".join(self.lines())
            assert time.monotonic() < deadline, "\n".join(self.lines())
            time.sleep(0.1)

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "notifyops", *args]
        env = self.env | extra
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def _ends(pid: int, within_s: float = 30.0) -> bool:
    """Whether process `pid` is gone (ended and reaped) within `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _environment(tmp_path: Path) -> dict[str, str]:
    database = tmp_path / "standby.db"
    upgrade_database(f"sqlite:///{database}")
    templates = tmp_path / "templates"
    templates.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "PREFECT_"))}
    return env | {
        "NOTIFY_DATABASE_URL": f"sqlite:///{database}",
        "NOTIFY_SENDER": "memory",
        "NOTIFY_TEMPLATES_DIR": str(templates),
        "NOTIFY_STANDBY_SOCKET": str(tmp_path / "standby.sock"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PYTHONPATH": str(ROOT),
    }


def _start(tmp_path: Path, sigint: signal.Handlers = signal.SIG_DFL) -> Iterator[Standby]:
    """A standby, stopped with SIGINT (Ctrl-C) at the end. `sigint`: how it inherits SIGINT."""
    env = _environment(tmp_path)
    log = tmp_path / "standby.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "notifyops", "standby"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
        )
    standby = Standby(process, log, env)
    try:
        standby.wait_ready()
        yield standby
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def standby(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standby]:
    yield from _start(tmp_path_factory.mktemp("standby"))


def test_a_command_runs_in_the_standby_with_its_own_settings(standby: Standby) -> None:
    done = standby.run("config", "--json", NOTIFY_SES_RATE="7")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ses_rate"] == 7.0  # the caller's value, not the standby's
    assert standby.ran("config --json")


def test_the_exit_status_and_the_error_line_reach_the_caller(standby: Standby) -> None:
    done = standby.run("templates", "preview", "no_such_template")
    assert done.returncode == 2
    assert "unknown template 'no_such_template'" in done.stderr
    assert standby.ran("templates preview no_such_template")


def test_files_the_command_creates_get_the_callers_umask(standby: Standby, tmp_path: Path) -> None:
    database = tmp_path / "private.db"
    command = [sys.executable, "-m", "notifyops", "db", "upgrade"]
    env = standby.env | {"NOTIFY_DATABASE_URL": f"sqlite:///{database}"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, umask=0o077)
    assert done.returncode == 0, done.stderr
    assert standby.ran("db upgrade")
    assert database.stat().st_mode & 0o777 == 0o600


def test_a_caller_that_gives_up_before_the_offer_is_never_run_for(
    standby: Standby, tmp_path: Path
) -> None:
    """A caller that timed out runs the command itself: the standby's child, whose offer came
    too late, must not run it as well (a send would go out twice)."""
    import socket as sockets

    from notifyops.standby import command_environment, receive_document, send_document

    database = tmp_path / "never.db"
    env = standby.env | {"NOTIFY_DATABASE_URL": f"sqlite:///{database}"}
    request = {
        "argv": ["db", "upgrade"],
        "env": command_environment(env, debug=False, serve=False),
        "cwd": str(tmp_path),
        "umask": 0o022,
        "prefix": sys.prefix,
    }
    with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as caller:
        caller.connect(env["NOTIFY_STANDBY_SOCKET"])
        send_document(caller, request, fds=(0, 1, 2))
        offer, _ = receive_document(caller)
        assert isinstance(offer, dict) and offer["pid"] > 0
    # the caller left without its go: the child ends without running the command
    assert _ends(offer["pid"])
    assert not database.exists()
    assert not any(line.startswith(f"standby: pid {offer['pid']} runs") for line in standby.lines())


def test_another_prefect_environment_runs_the_command_itself(standby: Standby) -> None:
    done = standby.run("--debug", "config", "--json", PREFECT_API_URL="http://127.0.0.1:9/api")
    assert done.returncode == 0 and json.loads(done.stdout)["sender"] == "memory"
    assert "refused: environment differs: PREFECT_API_URL" in done.stderr
    assert not standby.ran("--debug config --json")


def test_a_changed_prefect_profile_restarts_the_standby(tmp_path: Path) -> None:
    """`prefect config set` after the standby started changes no variable, but a command started
    now reads the new value: the standby, which loaded the old one, must not run it. It restarts
    with the new profile, and serves the commands after it again."""
    for standby in _start(tmp_path):
        assert standby.run("templates", "list", "--json").returncode == 0
        assert standby.ran("templates list --json")
        profiles = Path(standby.env["PREFECT_HOME"]) / "profiles.toml"
        profiles.parent.mkdir(parents=True, exist_ok=True)
        profiles.write_text(
            'active = "elsewhere"\n\n[profiles.elsewhere]\n'
            'PREFECT_API_URL = "http://127.0.0.1:9/api"\n'
        )
        done = standby.run("recipients", "list", "--json")
        assert done.returncode == 0, done.stderr
        assert not standby.ran("recipients list --json")
        standby.wait_ready(times=2)
        assert f"standby: {CHANGED}; restarting" in standby.lines()
        again = standby.run("recipients", "list", "--json")
        assert again.returncode == 0, again.stderr
        assert standby.ran("recipients list --json")


def test_ctrl_c_reaches_the_command(standby: Standby) -> None:
    """The command's process is the standby's child: the caller forwards SIGINT to it."""
    command = [sys.executable, "-m", "notifyops", "recipients", "import", "/dev/stdin"]
    caller = subprocess.Popen(
        command,
        env=standby.env,
        stdin=subprocess.PIPE,  # kept open: the import waits for its input
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not standby.ran("recipients import /dev/stdin"):
        assert time.monotonic() < deadline and caller.poll() is None, standby.lines()
        time.sleep(0.05)
    (line,) = [line for line in standby.lines() if line.endswith("import /dev/stdin`")]
    child = int(line.split()[2])
    time.sleep(0.5)  # the command is reading its input
    caller.send_signal(signal.SIGINT)
    caller.communicate(timeout=30)
    assert caller.returncode != 0
    assert _ends(child)  # and reaped


@pytest.mark.slow
def test_new_templates_restart_the_standby(tmp_path: Path) -> None:
    """The template list is read at import: a new template makes the standby refuse (the caller
    runs the command itself and sees it) and load afresh (the next caller is served with it)."""
    for standby in _start(tmp_path):
        source = ROOT / "notify" / "templates" / "test_message"
        shutil.copytree(source, Path(standby.env["NOTIFY_TEMPLATES_DIR"]) / "standby_check")
        first = standby.run("templates", "list", "--json")
        assert "standby_check" in first.stdout and not standby.ran("templates list --json")
        standby.wait_ready(times=2)
        assert f"standby: {CHANGED}; restarting" in standby.lines()
        second = standby.run("templates", "list", "--json")
        assert "standby_check" in second.stdout and standby.ran("templates list --json")


@pytest.mark.slow
def test_ctrl_c_stops_a_standby_that_inherited_sigint_ignored(tmp_path: Path) -> None:
    """A standby started as a script's background job inherits SIGINT ignored; Ctrl-C (SIGINT)
    still stops it, as its banner says."""
    for standby in _start(tmp_path, sigint=signal.SIG_IGN):
        assert standby.run("config", "--json").returncode == 0
    assert standby.process.returncode == 0  # _start sent SIGINT and waited for the exit


def test_a_socket_folder_open_to_others_is_refused(tmp_path: Path) -> None:
    """The socket hands over a command's environment and terminal: never in a shared folder."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    env = _environment(tmp_path) | {"NOTIFY_STANDBY_SOCKET": str(shared / "standby.sock")}
    command = [sys.executable, "-m", "notifyops", "standby"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{shared} must be yours and closed to others" in done.stderr
    assert not (shared / "standby.sock").exists()
