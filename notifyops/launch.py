"""The `notifyops` program: hand the command to a standby process when one runs, else run it here.

Imports nothing heavy: when `notifyops standby` runs in a matching environment, a command costs
this module, one Unix socket round trip and the command's own work (notifyops/standby.py); when
none runs, or it refuses (another environment, code changed), the command runs in this process
as before. NOTIFY_STANDBY=off skips the standby.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from types import FrameType

from notifyops.standby import (
    SOCKET_VARIABLE,
    command_environment,
    owned_privately,
    receive_document,
    send_document,
    socket_path,
)

CONNECT_TIMEOUT_S = 2.0


def entry_point() -> None:
    args = sys.argv[1:]
    if args == ["standby"]:  # its --help is the command line's
        from notifyops.standby import main

        sys.exit(main([]))
    if os.environ.get("NOTIFY_STANDBY", "").lower() not in ("off", "0", "false"):
        code = through_standby(args)
        if code is not None:
            sys.exit(code)
    from notifyops.cli import entry_point as run_here

    run_here()


def through_standby(args: list[str]) -> int | None:
    """The command's exit status, run by the standby; None when no standby took it."""
    path = socket_path()
    if not owned_privately(path):  # none there, or not this user's alone: run here
        return None
    debug = "--debug" in args
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(CONNECT_TIMEOUT_S)
    try:
        connection.connect(path)
        request = {
            "argv": args,
            "env": command_environment(
                os.environ, debug=debug, serve=first_command(args) == "serve"
            ),
            "cwd": os.getcwd(),
            "umask": _umask(),
            "prefix": sys.prefix,
        }
        send_document(connection, request, fds=(0, 1, 2))
        reply, _ = receive_document(connection)
    except (OSError, ValueError) as problem:  # no standby there (a stale socket): run here
        _note(debug, f"standby at {path} not used ({problem})")
        connection.close()
        return None
    if not isinstance(reply, dict) or "pid" not in reply:
        refused = reply.get("refused") if isinstance(reply, dict) else reply
        _note(debug, f"standby at {path} refused: {refused}")
        connection.close()
        return None
    try:  # from here on the command is the standby's: this process never runs it too
        send_document(connection, {"go": True})
    except OSError as problem:  # the child is gone before it started: run here
        _note(debug, f"standby at {path} not used ({problem})")
        connection.close()
        return None
    return _wait(connection, int(reply["pid"]))


def _wait(connection: socket.socket, pid: int) -> int:
    """Forward Ctrl-C and SIGTERM to the command's process until its exit status arrives."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    connection.settimeout(None)
    try:
        reply, _ = receive_document(connection)
    except (OSError, ValueError):
        sys.stderr.write(
            f"error: the standby's process {pid} for this command ended without an exit status "
            f"(see the standby's output; unset {SOCKET_VARIABLE} or set NOTIFY_STANDBY=off to "
            "run commands without it)\n"
        )
        return 1
    finally:
        connection.close()
    code = reply.get("exit") if isinstance(reply, dict) else None
    return code if isinstance(code, int) else 1


def _umask() -> int:
    mask = os.umask(0o022)  # reading it means setting it: put it straight back
    os.umask(mask)
    return mask


def _note(debug: bool, line: str) -> None:
    if debug:
        sys.stderr.write(f"debug: {line}\n")


def first_command(args: list[str]) -> str | None:
    """The command's name (`send`, `recipients`, ...): the first argument that is no option."""
    return next((arg for arg in args if not arg.startswith("-")), None)


if __name__ == "__main__":
    entry_point()
