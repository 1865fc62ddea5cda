"""Prefect defaults for runs started from the command line, set before Prefect is imported.

The same defaults pyproject.toml's [tool.prefect] gives inside the repository, for runs from
anywhere: an ephemeral API that may start slowly under load, no telemetry, quiet logs on the
terminal. A variable already set wins.

A flow run that fails inside a command makes Prefect log the error with its traceback on the
console (74-306 lines); the command then prints the one line that says what failed. So Prefect's
console handler shows CRITICAL only, unless --debug (then the traceback is shown). The run's logs
still reach the Prefect API (the UI shows them): only the console handler is quieted."""

from __future__ import annotations

import contextvars
import gc
import os
import ssl
import threading
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TypeVar

Result = TypeVar("Result")

PARAMETER_LIMIT_VARIABLE = "PREFECT_SERVER_API_MAX_PARAMETER_SIZE"
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # the ephemeral API takes a run's parameters whatever their size: a request's recipients are
    # one of them, and the default 512 KiB refuses one of ~40,000 (`too_large` explains it)
    PARAMETER_LIMIT_VARIABLE: "0",
}


QUIET_CONSOLE = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL"}


def apply_defaults(*, debug: bool = False, environ: MutableMapping[str, str] | None = None) -> None:
    """Set before Prefect is imported (Prefect reads its logging settings at import): in this
    process's environment, or in `environ` (a command's, as the standby compares it)."""
    target = os.environ if environ is None else environ
    for variable, value in (PREFECT_DEFAULTS | ({} if debug else QUIET_CONSOLE)).items():
        target.setdefault(variable, value)


def pause_collector() -> None:
    """For a command that runs a flow, while it loads Prefect and the flows: they allocate ~200k
    objects that live as long as the process, and the cyclic collector would scan them again and
    again as they load (0.3-0.4 s of a command's ~1.8 s of imports, measured). `run_flow`
    resumes it."""
    gc.disable()


def resume_collector() -> None:
    """Once loaded: what exists now lives as long as the command, so the collector never scans
    it again (`gc.freeze`) and collects what the run allocates. A no-op unless paused."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


@contextmanager
def _settings(*, version_checked: bool = False) -> Iterator[None]:
    """The current settings with the flow-run heartbeat off (and, once a client has checked the
    server's version, the check off). Prefect's `temporary_settings` would rebuild every setting
    from its sources (the environment, profiles.toml, pyproject.toml, .env: ~0.1 s per run,
    measured); this copies the settings with these values changed. `None` (off) cannot be given
    through the environment (the heartbeat variable takes seconds, at least 30)."""
    from prefect.context import SettingsContext, get_settings_context

    current = get_settings_context()
    flows = current.settings.flows.model_copy(update={"heartbeat_frequency": None})
    update: dict[str, Any] = {"flows": flows}
    if version_checked:
        update["client"] = current.settings.client.model_copy(
            update={"server_version_check_enabled": False}
        )
    settings = current.settings.model_copy(update=update)
    with SettingsContext(profile=current.profile, settings=settings):
        yield


@contextmanager
def _one_client() -> Iterator[None]:
    """One Prefect client for a command's run: the flow engine, the run's tasks and the warming
    thread use it, where the engine would build one and the pacers' check another. Over plain
    HTTP its TLS context is an empty one: Prefect gives every client it builds a context that
    parses the whole CA bundle (35-90 ms of CPU each, measured on a 2-core machine), which an
    http:// API never uses. An https API, or none (the ephemeral one), is left to Prefect.

    Over HTTP the run also starts Prefect's event and log workers now, from a thread of their
    own, while the run is created (the process waits on the API), rather than at its first event
    and first log: they open their client on Prefect's event loop (one, shared, with the empty
    TLS context: see `_start_run_services`), and the run's first task waited for them (0.25 s
    measured on a 2-core machine). Started from the command's thread, the run's creation waited
    for them instead (50 ms; 10,000 messages went from 4,173 to 4,347 msg/s, medians of six
    alternating runs); a first event or log waits for its worker as it would have anyway. The
    server's version, which this client has just checked, is not checked again by the workers'
    client (a request)."""
    from prefect.settings import PREFECT_API_URL

    if not str(PREFECT_API_URL.value() or "").startswith("http://"):
        yield
        return
    from prefect.client.orchestration import get_client
    from prefect.context import SyncClientContext

    unused_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client = get_client(sync_client=True, httpx_settings={"verify": unused_tls})
    # built around that client (its constructor would build a default one); its settings read as
    # the default ones, so every get_client(sync_client=True) of the run returns it
    with SyncClientContext.model_construct(client=client), _settings(version_checked=True):
        starting = contextvars.copy_context()  # this client and these settings
        threading.Thread(
            target=starting.run, args=(_start_run_services, unused_tls), daemon=True
        ).start()
        yield


def _start_run_services(unused_tls: ssl.SSLContext) -> None:
    """Prefect's event and log workers, started on its event loop (each connects by itself),
    sharing one async client with the command's empty TLS context: each would otherwise build
    its own with the whole CA bundle parsed (50-65 ms of CPU each). Prefect starts a worker in a
    copy of the caller's context, where its `get_client()` finds this client, once it is open
    on that loop; it closes when the loop shuts down, after the workers have drained."""
    from prefect._internal.concurrency.api import create_call, from_sync
    from prefect._internal.concurrency.threads import get_global_loop
    from prefect.client.orchestration import get_client
    from prefect.context import AsyncClientContext
    from prefect.events.utilities import should_emit_events
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED

    shared = get_client(httpx_settings={"verify": unused_tls})
    from_sync.call_soon_in_loop_thread(create_call(shared.__aenter__)).result()
    with AsyncClientContext.model_construct(client=shared):
        if should_emit_events():
            EventsWorker.instance()
        if PREFECT_LOGGING_TO_API_ENABLED.value():
            APILogWorker.instance()
    # after the workers' own shutdown calls (they run in order): closed once they have drained
    get_global_loop().add_shutdown_call(create_call(shared.__aexit__, None, None, None))


def run_flow(
    flow: Callable[..., Result], /, *, warm_senders: bool = False, **parameters: Any
) -> Result:
    """Call `flow` as a flow run of this process (shown in the UI when PREFECT_API_URL is set).

    While Prefect creates the run (API calls: the process waits), a thread builds the runtime's
    pieces (engine, catalogue and the run's template, ORM mappings and, for a run that delivers,
    the senders and the provider pacers), which the run's first tasks would otherwise build in
    line (0.1-0.4 s measured).
    A command's run lives as long as the command: the crash-detection heartbeat thread, which
    makes every run wait up to a second for it at the end, is off for it."""
    from notify.bootstrap import runtime
    from tasks.pacing import pacers_for

    resume_collector()
    here = runtime()  # settings errors surface here, in the command's own thread
    pacing = pacers_for if warm_senders else None
    with _settings(), _one_client():
        warming = threading.Thread(
            target=contextvars.copy_context().run,  # the run's client
            args=(here.warm,),
            kwargs={"senders": warm_senders, "pacers": pacing, "template": _template(parameters)},
            daemon=True,
        )
        warming.start()
        try:
            return _noted(flow(**parameters))
        except Exception as error:
            refused = too_large(error)
            if refused is not None:
                raise refused from error
            raise
        finally:
            warming.join()  # nothing it builds outlives the run unowned (the runtime closes after)


RUN_NOTE = "flow run "


def _noted(result: Result) -> Result:
    """A failed run's state (`return_state=True`) as it was: its exception, which the command
    raises again, notes the run's id, so that the command's error line can name the run (a send
    cut off by a lost database resumes under the run's key when it had none of its own)."""
    from prefect.states import State

    if isinstance(result, State) and result.is_failed():
        error = result.result(raise_on_failure=False)
        run = result.state_details.flow_run_id
        if isinstance(error, BaseException) and run is not None:
            error.add_note(f"{RUN_NOTE}{run}")
    return result


def _template(parameters: dict[str, Any]) -> str | None:
    """The template a dispatch run renders (warmed beside the run's creation), if any."""
    name = parameters.get("template")
    return name if isinstance(name, str) else None


def too_large(error: BaseException) -> Exception | None:
    """The Prefect server refused the run's parameters as too large (HTTP 422, its 512 KiB
    default): what to do about it, as bad input, or None for any other error."""
    response = getattr(error, "response", None)
    if getattr(response, "status_code", None) != 422:
        return None
    detail = str(getattr(response, "text", ""))
    if "parameters must be less than" not in detail:
        return None
    from notify.errors import InputError

    return InputError(
        "to: the request is too large for the Prefect server's flow run parameters "
        f"({_server_words(detail)}). Start the server with {PARAMETER_LIMIT_VARIABLE}=0 (no "
        "limit; the default in this repository's pyproject.toml and for the ephemeral API), "
        "or send the recipients in several requests (--to-file in parts)"
    )


def _server_words(detail: str) -> str:
    start = detail.find("Flow run parameters")
    end = detail.find(")", start)
    return detail[start : end + 1] if start >= 0 and end > start else "HTTP 422"
