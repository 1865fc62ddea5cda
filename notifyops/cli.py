"""`notifyops`: the command line, the top floor (CLI -> flows -> tasks -> notify).

Each command group lives in notifyops/commands/; command modules import only Typer and the console
at module level and load the library, flows and Prefect inside the command that needs them, so
`notifyops --help` stays fast. Errors print as one readable line (the traceback only with
--debug). Exit codes: 0 ok, 1 partial failure or threshold breached, 2 bad input or setup error.
"""

from __future__ import annotations

import gc
import sys
import traceback

import typer

from notifyops.commands import (
    audit,
    config,
    db,
    demo,
    receipts,
    recipients,
    redrive,
    send,
    serve,
    templates,
)
from notifyops.console import EXIT_BAD_INPUT, EXIT_PARTIAL, fail_line
from notifyops.prefect_env import apply_defaults

app = typer.Typer(
    name="notifyops",
    help="Notification operations on Prefect: send, deliver and audit notifications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db.app, name="db")
app.add_typer(recipients.app, name="recipients")
app.add_typer(templates.app, name="templates")
app.add_typer(audit.app, name="audit")
app.add_typer(audit.alarms_app, name="alarms")
app.add_typer(receipts.app, name="receipts")
app.command("send")(send.send)
app.command("deliver")(send.deliver)
app.command("test-email")(send.test_email)
app.command("health")(audit.health_command)
app.command("redrive")(redrive.redrive_command)
app.command("serve")(serve.serve)
app.command("config")(config.config)
app.command("demo")(demo.demo)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """Notification operations on Prefect: send, deliver and audit notifications."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    apply_defaults()
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
    except Exception as problem:  # the one place that turns any error into a readable line
        return _report(problem, debug="--debug" in args)
    return code if isinstance(code, int) else 0


def _report(problem: BaseException, *, debug: bool) -> int:
    from notify.errors import NotifyError
    from notify.masking import mask_url
    from notify.settings import SettingsError

    if debug:
        traceback.print_exception(problem)
    if isinstance(problem, NotifyError | SettingsError):
        line = str(problem)
    else:
        line = f"{type(problem).__name__}: {problem} (rerun with --debug for details)"
    fail_line(mask_url(line.strip().splitlines()[0] if line.strip() else line))
    return EXIT_BAD_INPUT


def entry_point() -> None:
    code = main()
    gc.freeze()  # nothing left to collect: skip the interpreter's teardown sweep
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
