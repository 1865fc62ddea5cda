"""`notifyops`: the command line. Each command group lives in notify/commands/.

Errors print as one readable line (the traceback only with --debug). Exit codes: 0 ok, 1 partial
failure or threshold breached, 2 bad input or setup error. Commands that run flows import them
lazily, so importing this module never loads Prefect.
"""

from __future__ import annotations

import sys
import traceback

import typer

from notify.commands import audit as audit_commands
from notify.commands import db as db_commands
from notify.commands import misc as misc_commands
from notify.commands import ops as ops_commands
from notify.commands import recipients as recipient_commands
from notify.commands import send as send_commands
from notify.commands import templates as template_commands
from notify.console import EXIT_BAD_INPUT, EXIT_PARTIAL, fail_line
from notify.errors import NotifyError
from notify.settings import SettingsError

app = typer.Typer(
    name="notifyops",
    help="Notification operations on Prefect: send, deliver and audit notifications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db_commands.app, name="db")
app.add_typer(recipient_commands.app, name="recipients")
app.add_typer(template_commands.app, name="templates")
send_commands.register(app)
ops_commands.register(app)
audit_commands.register(app)
misc_commands.register(app)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """Notification operations on Prefect: send, deliver and audit notifications."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = app(args=args, prog_name="notifyops", standalone_mode=False)
    except typer.Exit as done:
        return int(done.exit_code or 0)
    except typer.Abort:
        fail_line("aborted")
        return EXIT_PARTIAL
    except typer.TyperException as usage:  # usage errors: the command line is wrong
        show = getattr(usage, "show", None)
        if show is None:
            fail_line(str(usage))
        else:
            show()
        return EXIT_BAD_INPUT
    except (NotifyError, SettingsError) as problem:
        return _report(problem, debug, str(problem))
    except Exception as crash:  # the one place that turns any crash into a readable line
        return _report(
            crash, debug, f"{type(crash).__name__}: {crash} (rerun with --debug for details)"
        )
    return code if isinstance(code, int) else 0


def _report(problem: BaseException, debug: bool, line: str) -> int:
    if debug:
        traceback.print_exception(problem)
    fail_line(line)
    return EXIT_BAD_INPUT


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
