"""A standby process: Prefect, the flows and the library loaded once; each command runs in a fork.

`notifyops standby` imports what a command needs (Prefect alone is 1.5-2.5 s of imports on a
2-core machine; the flows, SQLAlchemy, Jinja2 and boto3 another 1-2 s), then waits on a Unix
socket. A `notifyops` command started in a matching environment (`launch.py`, which imports
nothing heavy) connects, hands over its arguments, environment, working directory and its
stdin/stdout/stderr; the standby forks, and the child runs the command as the command line would
(`notifyops.cli.main`), flow runs included: the run is an ordinary Prefect flow run of that child
and shows in the UI. Its exit status goes back to the client, which exits with it. The same
pattern as Python's multiprocessing forkserver or Rails' Spring: forking a process that has
imported everything costs milliseconds.

What keeps the child equal to a fresh process:
- the standby imports modules only: no thread, no database connection, no Prefect client exists
  before a fork (checked at start), and the composition root (`notify.bootstrap`) is reset in the
  child, so settings, engine and senders are built from the client's own environment;
- what is read at import time must match: Prefect's settings (every `PREFECT_*` variable, after
  the command line's own defaults), `NOTIFY_TEMPLATES_DIR` (the template list of the dispatch form)
  and the interpreter. A client whose values differ is refused and runs the command itself, as is
  one whose Prefect settings, read as its own process would read them (its variables, the active
  profile of `prefect config set` / `prefect profile use`, `.env` and `prefect.toml` in its working
  directory), are not those the standby loaded;
- the loaded code and settings must be current: before each fork the standby compares the
  modification times of the project's sources and templates, of the installed packages' folders,
  and of the files its Prefect settings came from (the profiles file, and `.env`, `prefect.toml`
  and `pyproject.toml` in its working directory) with those it loaded; on a change it refuses the
  command (the client runs it itself) and restarts itself with the new code and settings.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from notifyops.prefect_env import apply_defaults

SOCKET_VARIABLE = "NOTIFY_STANDBY_SOCKET"
IMPORT_TIME_VARIABLES = ("NOTIFY_TEMPLATES_DIR", "PYTHONPATH", "VIRTUAL_ENV")
PACKAGES = ("notifyops", "flows", "tasks", "notify", "deployments")
PRELOAD = (  # what commands import; the command modules themselves load in the child (cheap)
    "typer",
    "rich.console",
    "rich.table",
    "psycopg2.extras",  # the PostgreSQL driver, loaded with the first engine
    "flows.dispatch",
    "flows.deliver",
    "flows.monitoring",
    "flows.actions",
    "flows.receipts",
    "notify.audits",
    "notify.receipts",
    "notify.senders.ses",
    "notify.senders.sns",
    "notify.senders.smtp",
    "boto3",
)
HEADER = struct.Struct("!I")
STANDARD_STREAMS = 3
MAX_REQUEST_BYTES = 16 * 2**20
REQUEST_TIMEOUT_S = 10.0
CHANGED = "the code, the templates, the installed packages or the Prefect settings changed"
# what Prefect reads its settings from besides the variables, in the working directory
PREFECT_SETTINGS_FILES = (".env", "prefect.toml", "pyproject.toml")


def socket_path() -> str:
    """NOTIFY_STANDBY_SOCKET, else one socket per user and interpreter in the temp directory."""
    chosen = os.environ.get(SOCKET_VARIABLE)
    if chosen:
        return chosen
    base = os.environ.get("TMPDIR") or "/tmp"
    tag = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return os.path.join(base, f"notifyops-{os.getuid()}", f"standby-{tag}.sock")


def command_environment(environ: Mapping[str, str], *, debug: bool, serve: bool) -> dict[str, str]:
    """The environment a command runs with: the command line's Prefect defaults applied, as its
    own process would apply them before importing Prefect."""
    applied = dict(environ)
    apply_defaults(debug=debug or serve, environ=applied)
    return applied


def import_time_values(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables read when the modules are imported: these must be the standby's own."""
    return {
        name: value
        for name, value in environ.items()
        if name.startswith("PREFECT_") or name in IMPORT_TIME_VARIABLES
    }


# --- the wire: a length-prefixed JSON document, the client's three streams passed along ---


def send_document(connection: socket.socket, document: object, fds: Iterable[int] = ()) -> None:
    data = json.dumps(document).encode()
    message = HEADER.pack(len(data)) + data
    fds = list(fds)
    if fds:
        sent = socket.send_fds(connection, [message[: HEADER.size]], fds)
        connection.sendall(message[sent:])
    else:
        connection.sendall(message)


def receive_document(
    connection: socket.socket, *, with_fds: bool = False
) -> tuple[object, list[int]]:
    fds: list[int] = []
    if with_fds:
        head, fds, _flags, _address = socket.recv_fds(connection, HEADER.size, STANDARD_STREAMS)
    else:
        head = connection.recv(HEADER.size)
    head += _exactly(connection, HEADER.size - len(head))
    (size,) = HEADER.unpack(head)
    if size > MAX_REQUEST_BYTES:
        raise ValueError(f"a request of {size:,} bytes; at most {MAX_REQUEST_BYTES:,}")
    return json.loads(_exactly(connection, size)), fds


def _exactly(connection: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = connection.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks += chunk
    return bytes(chunks)


# --- the standby process ---


class SourceStamp:
    """Modification times of the project's sources and templates, as loaded, of the folders
    installed packages live in (a folder's time changes when a package is added, upgraded or
    removed), and of the files the Prefect settings were read from (`files`; one that did not
    exist and now does is a change too)."""

    def __init__(
        self,
        roots: Iterable[Path],
        package_folders: Iterable[Path] = (),
        files: Iterable[Path] = (),
    ) -> None:
        self.roots = [root for root in roots if root.is_dir()]
        self.package_folders = [folder for folder in package_folders if folder.is_dir()]
        self.files = list(files)
        self.loaded = self.read()

    def read(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for installed in self.package_folders:
            found[str(installed)] = os.stat(installed).st_mtime_ns
        for file in self.files:
            try:
                found[str(file)] = os.stat(file).st_mtime_ns
            except OSError:
                found[str(file)] = -1  # absent
        for root in self.roots:
            for folder, _dirs, files in os.walk(root):
                for name in files:
                    if name.endswith((".py", ".j2", ".json", ".html", ".txt")):
                        path = os.path.join(folder, name)
                        try:
                            found[path] = os.stat(path).st_mtime_ns
                        except OSError:
                            continue
        return found

    def changed(self) -> bool:
        return self.read() != self.loaded


def project_roots() -> list[Path]:
    import notify

    here = Path(notify.__file__).resolve().parent.parent
    roots = [here / package for package in PACKAGES]
    templates = os.environ.get("NOTIFY_TEMPLATES_DIR")
    return roots + ([Path(templates)] if templates else [])


def package_folders() -> list[Path]:
    import sysconfig

    paths = sysconfig.get_paths()
    return sorted({Path(paths["purelib"]), Path(paths["platlib"])})


def prefect_settings_files() -> list[Path]:
    """The files this process's Prefect settings came from, besides its variables: the profiles
    (`prefect config set`, `prefect profile use` write them) and the working directory's own."""
    from prefect.settings import get_current_settings

    here = Path.cwd()
    return [Path(get_current_settings().profiles_path)] + [
        here / name for name in PREFECT_SETTINGS_FILES
    ]


def preload(log: list[str]) -> float:
    """Import what commands use, with the collector paused; returns the seconds it took."""
    started = time.perf_counter()
    gc.disable()
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as missing:  # an optional extra (boto3 without AWS) loads in the child
            log.append(f"not preloaded: {name} ({missing})")
    gc.freeze()
    gc.enable()
    return time.perf_counter() - started


Say = Callable[[str], None]


def serve_forever(path: str, say: Say) -> int:
    """Preload, listen on `path`, fork a child per command until SIGTERM or SIGINT.

    In a child this raises SystemExit with the command's exit status: the child leaves like any
    command (atexit handlers run, Prefect's log and event queues are drained)."""
    notes: list[str] = []
    took = preload(notes)
    for note in notes:
        say(note)
    if threading.active_count() != 1:  # a fork copies only the calling thread
        names = ", ".join(t.name for t in threading.enumerate())
        say(f"standby: a thread started while loading ({names}); refusing to fork")
        return 2
    stamp = SourceStamp(project_roots(), package_folders(), prefect_settings_files())
    listener = _listen(path)
    expected = import_time_values(os.environ)
    loaded = _prefect_settings()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Ctrl-C stops it even when it was started with SIGINT ignored (a script's background job
    # inherits that, and Python then leaves SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    say(f"standby: ready on {path} (loaded in {took:.1f} s); Ctrl-C stops it")
    standby = os.getpid()
    try:
        while True:
            connection, _address = listener.accept()
            if stamp.changed():
                _refuse(connection, f"{CHANGED}; the standby restarts")
                say(f"standby: {CHANGED}; restarting")
                listener.close()
                _remove(path)
                os.execv(sys.executable, [sys.executable, "-m", "notifyops", "standby"])
            sys.stdout.flush()  # a child must not inherit (and print) the standby's buffers
            sys.stderr.flush()
            if os.fork() == 0:
                listener.close()
                raise SystemExit(_child(connection, expected, loaded, say))
            connection.close()
    except KeyboardInterrupt:
        return 0
    finally:
        if os.getpid() == standby:
            _remove(path)


def owned_privately(path: str) -> bool:
    """Is `path` this user's and closed to everyone else? The socket hands over a command's
    environment (secrets included) and its terminal: neither may reach another user's socket."""
    try:
        found = os.stat(path)
    except OSError:
        return False
    return found.st_uid == os.getuid() and found.st_mode & 0o077 == 0


def _listen(path: str) -> socket.socket:
    """A socket at `path`, in the folder `main` made and checked."""
    _remove(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket: this user only
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(16)
    return listener


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _refuse(connection: socket.socket, reason: str) -> None:
    try:
        _request, fds = receive_document(connection, with_fds=True)
        _close(fds)
        send_document(connection, {"refused": reason})
    except (OSError, ValueError):
        pass
    connection.close()


def _close(fds: Iterable[int]) -> None:
    """The caller's streams, when the command does not run here: kept open, they would hold the
    caller's pipes open."""
    for fd in fds:
        os.close(fd)


def _prefect_settings() -> object:
    """The Prefect settings this process runs with (read when Prefect was imported)."""
    from prefect.settings import get_current_settings

    return get_current_settings()


def _prefect_settings_differ(cwd: str, environ: Mapping[str, str], loaded: object) -> bool:
    """Would a process of the caller's read other Prefect settings than the standby loaded? Its
    variables can match while the active profile changed since (`prefect config set`,
    `prefect profile use`) or its working directory has its own `.env` or `prefect.toml`. Read in
    the child (it becomes the caller's command, or ends), in ~20 ms."""
    from prefect.settings import Settings

    try:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        return Settings() != loaded
    except Exception:  # unreadable there (no such folder, a bad value): the caller reports it
        return True


def _child(connection: socket.socket, expected: Mapping[str, str], loaded: object, say: Say) -> int:
    """In the fork: take the client's request, become its command, report the exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, forwarded by the client
    connection.settimeout(REQUEST_TIMEOUT_S)
    try:
        request, fds = receive_document(connection, with_fds=True)
    except (OSError, ValueError):
        return 2
    if not isinstance(request, dict):
        return 2
    environ = dict(request["env"])
    differs = sorted(
        name
        for name in set(expected) | set(import_time_values(environ))
        if expected.get(name) != environ.get(name)
    )
    if differs or len(fds) != STANDARD_STREAMS or request.get("prefix") != sys.prefix:
        reason = f"environment differs: {', '.join(differs)}" if differs else "another Python"
        send_document(connection, {"refused": reason})
        _close(fds)
        return 0
    if _prefect_settings_differ(str(request.get("cwd")), environ, loaded):
        reason = "Prefect settings differ (the active profile, or .env or prefect.toml here)"
        send_document(connection, {"refused": reason})
        _close(fds)
        return 0
    if not _caller_waits(connection):  # it gave up and runs the command itself: never twice
        _close(fds)
        return 0
    connection.settimeout(None)
    say(f"standby: pid {os.getpid()} runs `notifyops {' '.join(request['argv'])[:200]}`")
    code = _run_command(request, environ, fds)
    with contextlib.suppress(OSError):
        send_document(connection, {"exit": code})
    return code


def _caller_waits(connection: socket.socket) -> bool:
    """Offer to run the command and wait for the caller's go. A caller that timed out before
    our offer arrived runs the command itself and closes the connection: the child must then
    not run it too (a send would go out twice)."""
    try:
        send_document(connection, {"pid": os.getpid()})
        answer, _ = receive_document(connection)
    except (OSError, ValueError):
        return False
    return isinstance(answer, dict) and answer.get("go") is True


def _run_command(request: dict[str, Any], environ: dict[str, str], fds: list[int]) -> int:
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=stream.isatty())
    os.chdir(request["cwd"])
    os.umask(int(request.get("umask", 0o022)))  # files the command creates: the caller's mode
    os.environ.clear()
    os.environ.update(environ)
    sys.argv = ["notifyops", *request["argv"]]
    from notify.bootstrap import reset

    reset()  # settings, engine and senders from the client's environment
    from notifyops.cli import main

    try:
        return main(list(request["argv"]))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main(args: list[str]) -> int:
    """`notifyops standby`: serve commands from this environment until stopped."""
    if args:
        _say(f"standby: takes no arguments (got {' '.join(args)}); see `notifyops standby --help`")
        return 2
    apply_defaults()  # the same Prefect defaults every command gets, before Prefect loads
    path = socket_path()
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if not owned_privately(folder):
        _say(f"standby: {folder} must be yours and closed to others (chmod 700 {folder})")
        return 2
    if _answers(path):
        _say(f"standby: one already runs on {path}")
        return 2
    return serve_forever(path, _say)


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
