"""`notifyops`: the command line, the top floor (CLI -> flows -> tasks -> notify).

Each command group lives in notifyops/commands/; command modules import only Typer and the console
at module level and load the library, flows and Prefect inside the command that needs them, so
`notifyops --help` stays fast. Errors print as one readable line (the traceback only with
--debug). Exit codes: 0 ok, 1 partial failure or threshold breached, 2 bad input or setup error,
141 (128 + SIGPIPE) when the program reading the output closed it (`| head -1`): quietly, and
what the command did before it printed stands.
"""

from __future__ import annotations

import gc
import os
import sys
import traceback

import typer
import typer.main

from notifyops.commands import (
    actions,
    audit,
    config,
    db,
    decide,
    demo,
    inbox,
    purge,
    receipts,
    recipients,
    redrive,
    send,
    serve,
    ses,
    standby,
    suppressions,
    templates,
)
from notifyops.console import (
    EXIT_BAD_INPUT,
    EXIT_PARTIAL,
    OutputClosed,
    err,
    fail_line,
    output_closed,
)
from notifyops.help_text import unwrap_help
from notifyops.launch import first_command
from notifyops.prefect_env import apply_defaults, pause_collector, resume_collector

RUNS_A_FLOW = frozenset({"send", "deliver", "health", "audit", "demo"})  # unless --direct

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
app.add_typer(suppressions.app, name="suppressions")
app.add_typer(inbox.app, name="inbox")
app.add_typer(ses.app, name="ses")
app.add_typer(receipts.app, name="receipts")
app.command("send")(send.send)
app.command("deliver")(send.deliver)
app.command("test-email")(send.test_email)
app.command("health")(audit.health_command)
app.command("redrive")(redrive.redrive_command)
app.command("purge")(purge.purge_command)
app.command("decide-unknown")(decide.decide_command)
app.command("actions")(actions.actions_command)
app.command("serve")(serve.serve)
app.command("standby")(standby.standby)
app.command("config")(config.config)
app.command("demo")(demo.demo)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """Notification operations on Prefect: send, deliver and audit notifications."""


unwrap_help(app)


def main(argv: list[str] | None = None) -> int:
    """The command's exit status; the one entry of the command line and of the standby's
    children (notifyops.standby)."""
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except OutputClosed:  # `notifyops ... | head -1`: the reader has what it wanted
        return output_closed()
    except SystemExit as stopped:
        # Typer prints help through a Rich console of its own, whose answer to a broken pipe is
        # to exit 1 (the status of a partial failure here): `notifyops --help | head -1`
        if isinstance(stopped.__context__, BrokenPipeError):
            return output_closed()
        raise


def _run(args: list[str]) -> int:
    debug = "--debug" in args
    if debug:  # accepted anywhere on the line, not only before the command
        args = ["--debug", *(arg for arg in args if arg != "--debug")]
    apply_defaults(debug=debug or first_command(args) == "serve")  # serve shows its runs' logs
    if first_command(args) is not None and not {"--help", "-h"} & set(args):
        _warn_unknown_variables()  # not for help: it loads no settings, and stays quick
    try:
        code = app(args=args, prog_name="notifyops", standalone_mode=False)
    except typer.Exit as done:
        return int(done.exit_code or 0)
    except (typer.Abort, KeyboardInterrupt):
        fail_line("aborted")
        return EXIT_PARTIAL
    except typer.TyperException as usage:  # the command line itself is wrong
        show = getattr(usage, "show", None)
        if type(usage).__name__ == "NoArgsIsHelpError" and show is not None:
            show()  # a group without its command: its help
        else:
            fail_line(_usage_line(usage))
        return EXIT_BAD_INPUT
    except OutputClosed:
        raise  # not an error: main's
    except Exception as problem:  # the one place that turns any error into a readable line
        return _report(problem, debug=debug, args=args)
    return code if isinstance(code, int) else 0


def _warn_unknown_variables() -> None:
    """A NOTIFY_* variable no setting reads (a misspelt one) is named on stderr, once per
    command, with the setting it likely means; the command goes on with the defaults."""
    from notify.settings import unknown_variables

    for line in unknown_variables(os.environ):
        err.print(f"warning: {line}")


def _usage_line(usage: typer.TyperException) -> str:
    """`Invalid value for '--limit': ... (see `notifyops recipients list --help`)`."""
    format_message = getattr(usage, "format_message", None)
    message = " ".join(str(format_message() if format_message else usage).split())
    context = getattr(usage, "ctx", None)
    where = context.command_path if context is not None else "notifyops"
    return f"{message} (see `{where} --help`)"


def _report(problem: BaseException, *, debug: bool, args: list[str] | None = None) -> int:
    from notify.errors import NotifyError
    from notify.settings import SettingsError

    if debug:
        traceback.print_exception(problem)
    unreachable = _unreachable_api(problem)
    lost = _lost_database_line(problem, args or [])
    if unreachable is not None:
        line = _api_down_line(unreachable, problem, direct=_takes_direct(args or []))
    elif lost is not None:
        line = lost
    elif isinstance(problem, NotifyError | SettingsError):
        line = str(problem)
    else:
        line = f"{_describe_unexpected(problem)} (rerun with --debug for details)"
    fail_line(_one_line(line))
    return EXIT_BAD_INPUT


UNREACHABLE = "Failed to reach API at "  # Prefect's words when its API does not answer


def _causes(problem: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = problem
    while current is not None and current not in chain and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _unreachable_api(problem: BaseException) -> str | None:
    """The Prefect API's URL when the error is that it did not answer (at the run's start:
    Prefect's "Failed to reach API at URL"; during the run: a connection error to it), else
    None."""
    api = _configured_api()
    for error in _causes(problem):
        text = str(error)
        if isinstance(error, RuntimeError) and UNREACHABLE in text:
            return text.split(UNREACHABLE, 1)[1].strip().rstrip(".")
        httpx = sys.modules.get("httpx")
        if api and httpx is not None and isinstance(error, httpx.TransportError):
            try:
                url = str(error.request.url)
            except RuntimeError:  # an error raised without its request
                continue
            if url.startswith(api.rstrip("/")):
                return api
    return None


def _configured_api() -> str | None:
    if "prefect.settings" not in sys.modules:
        return os.environ.get("PREFECT_API_URL") or None
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "") or None


def _api_down_line(url: str, problem: BaseException, *, direct: bool) -> str:
    """`the Prefect API at URL does not answer: start it (...), or ...`: what is wrong and the
    ways on, in the README's words."""
    from urllib.parse import urlsplit

    status = next(
        (
            getattr(getattr(e, "response", None), "status_code", None)
            for e in _causes(problem)
            if getattr(getattr(e, "response", None), "status_code", None)
        ),
        None,
    )
    if status is not None:
        return (
            f"the Prefect API at {url} (PREFECT_API_URL) answered HTTP {status}: set "
            "PREFECT_API_URL to the server's API address (it ends in /api, e.g. "
            "http://127.0.0.1:4200/api)"
        )
    what = f"the Prefect API at {url} (PREFECT_API_URL) does not answer"
    parts = urlsplit(url)
    if parts.hostname in ("127.0.0.1", "localhost", "::1"):
        port = "" if parts.port in (None, 4200) else f" --port {parts.port}"
        start = f"start it (`prefect server start --background{port}`)"
    else:
        start = f"start the Prefect server on {parts.hostname}"
    unset = (
        "unset PREFECT_API_URL"
        if "PREFECT_API_URL" in os.environ
        else "`prefect config unset PREFECT_API_URL`"
    )
    ways = [start, f"{unset} to run on a temporary API (slower to start)"]
    if direct:
        ways.append("add --direct to run this without Prefect")
    return f"{what}: {', or '.join(ways)}"


def _lost_database_line(problem: BaseException, args: list[str]) -> str | None:
    """A `send` whose run lost its database connection: what is known (what was stored is kept,
    part by part; what was being sent is not sent again by itself) and how to resume, under the
    request's key (the run's, when the command gave none). None for anything else."""
    sqlalchemy = sys.modules.get("sqlalchemy.exc")
    if first_command(args) != "send" or sqlalchemy is None:
        return None
    lost = (sqlalchemy.OperationalError, sqlalchemy.InterfaceError)
    error = next((e for e in _causes(problem) if isinstance(e, lost)), None)
    from notifyops.prefect_env import RUN_NOTE

    notes = getattr(problem, "__notes__", [])
    run = next((n.removeprefix(RUN_NOTE) for n in notes if n.startswith(RUN_NOTE)), None)
    if error is None or run is None:  # before the run: nothing was stored
        return None
    key = _option_value(args, "--idempotency-key") or f"flow-run:{run}"
    cause = _one_line(_describe_unexpected(error))
    return (
        f"the database connection was lost during the send (flow run {run}; {cause}). What the "
        "run stored before is kept (each part is committed whole) and is sent by `notifyops "
        "deliver` or the deliver-pending schedule; rows it was sending stay held until their "
        "lease expires and are then left `unknown`, never sent twice (docs/RUNBOOK.md, section "
        "5). Once the database answers, run the same command with --idempotency-key "
        f"{key}: it stores only what is missing and sends what is due"
    )


def _option_value(args: list[str], option: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == option and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(f"{option}="):
            return arg.split("=", 1)[1]
    return None


def _takes_direct(args: list[str]) -> bool:
    """Whether the command on this line has a --direct option (it can run without Prefect)."""
    command = typer.main.get_command(app)
    for word in (arg for arg in args if not arg.startswith("-")):
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        command = sub
    return any("--direct" in getattr(param, "opts", ()) for param in command.params)


def _describe_unexpected(problem: BaseException) -> str:
    """A readable line for errors no layer turned into one (a database error, a bug)."""
    if isinstance(problem, UnicodeDecodeError):
        return f"input is not UTF-8 ({problem.reason} at byte {problem.start})"
    if isinstance(problem, OverflowError):
        return f"a number or date is out of range ({problem})"
    if isinstance(problem, OSError) and problem.filename:
        return f"cannot use {problem.filename}: {problem.strerror or problem}"
    orig = getattr(problem, "orig", None)  # SQLAlchemy: the driver's own message
    text = str(orig) if orig is not None else str(problem)
    return f"{type(problem).__name__}: {text}"


def _one_line(text: str) -> str:
    """The first non-empty line, secrets masked (URL passwords, webhook paths, secret values)."""
    from notify.masking import mask_url

    first = next((line.strip() for line in text.splitlines() if line.strip()), text.strip())
    return mask_url(first or "failed (no message)", secrets=secret_values())


def secret_values() -> list[str]:
    """Secret values this process knows of, to hide wherever they might turn up."""
    names = ("NOTIFY_SMTP_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    found = [os.environ.get(name, "") for name in names]
    webhook = os.environ.get("NOTIFY_ALERT_WEBHOOK_URL", "")
    found.append(webhook.split("://", 1)[-1].partition("/")[2])  # the webhook's path
    return [value for value in found if len(value) >= 4]


def entry_point() -> None:
    if first_command(sys.argv[1:]) in RUNS_A_FLOW:
        pause_collector()  # while it loads Prefect and the flows; its flow run resumes it
    code = main()
    resume_collector()  # a command that ended before its run (bad input, --direct)
    gc.freeze()  # nothing left to collect: skip the interpreter's teardown sweep
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
