"""What an ad hoc command costs from start to exit, with and without `notifyops standby`.

    python -m bench.startup [--runs 5] [--json]

Against a Prefect server on PostgreSQL (bench/prefect_server.py), the delivery log on a scratch
PostgreSQL database and moto in server mode playing SES and SNS (the provider is reached over
HTTP with real boto3 calls): `notifyops --help`; a one-recipient `notifyops send` of
`repair_assigned` (email and SMS), timed from the command's start to its exit, by which time the
stand-in has both messages (checked); the same send through a running `notifyops standby`; and
`notifyops config` through it. `python -c "import prefect"` is timed too: imports follow the
machine's state, and this says which state the run met. Medians of `--runs` runs, after one
unmeasured send.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import ADMIN_URL, ROOT, log, prepare_database, scratch_database
from bench.prefect_server import prefect_server
from notify.standin import LocalAws, start_local_aws, verify_sender

READY_TIMEOUT_S = 180
RECIPIENT = "bench:0"  # bench.common.recipient_row(0): email and SMS on


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each command")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    result = measure(args.runs)
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        print(markdown(result))
    return result


def measure(runs: int) -> dict[str, Any]:
    with (
        scratch_database(ADMIN_URL) as url,
        tempfile.TemporaryDirectory(prefix="notifyops-startup-") as tmp,
        prefect_server(Path(tmp)) as server,
    ):
        prepare_database(url, 1)
        aws = start_local_aws("us-east-1")
        try:
            _verify_sender(aws)
            env = {
                **os.environ,
                **server.env,
                "NOTIFY_DATABASE_URL": url,
                "NOTIFY_STANDBY_SOCKET": str(Path(tmp) / "standby" / "standby.sock"),
                "PYTHONPATH": str(ROOT),
            }
            return _measure_all(runs, env, aws, Path(tmp))
        finally:
            aws.stop()


def _measure_all(runs: int, env: dict[str, str], aws: LocalAws, workdir: Path) -> dict[str, Any]:
    alone = env | {"NOTIFY_STANDBY": "off"}
    sends = _Sends(aws)
    imports = _timed(runs, lambda: _run([sys.executable, "-c", "import prefect"], alone))
    helps = _timed(runs, lambda: _run(_notifyops("--help"), alone))
    sends.one(alone)  # unmeasured: the server learns the flow, the caches fill
    log(f"send without a standby, {runs} runs")
    send_alone = _timed(runs, lambda: sends.one(alone))
    with _standby(env, workdir) as loaded_s:
        log(f"send through the standby, {runs} runs")
        send_standby = _timed(runs, lambda: sends.one(env))
        config_standby = _timed(runs, lambda: _run(_notifyops("config", "--json"), env))
    return {
        "runs": runs,
        "import_prefect_s": statistics.median(imports),
        "help_s": statistics.median(helps),
        "send_s": statistics.median(send_alone),
        "send_standby_s": statistics.median(send_standby),
        "config_standby_s": statistics.median(config_standby),
        "standby_load_s": loaded_s,
        "samples": {
            "import_prefect_s": imports,
            "help_s": helps,
            "send_s": send_alone,
            "send_standby_s": send_standby,
            "config_standby_s": config_standby,
        },
    }


class _Sends:
    """One-recipient sends, each of its own repair (the loop guard counts repeated titles),
    each checked: exit 0 and two more messages at the stand-in."""

    def __init__(self, aws: LocalAws) -> None:
        self.aws, self.count = aws, 0

    def one(self, env: Mapping[str, str]) -> float:
        """The send's seconds (the command alone: the stand-in is asked before and after)."""
        self.count += 1
        before = self.aws.sent()
        context = json.dumps({"repair_id": f"START-{self.count}", "unit_number": "1234"})
        command = _notifyops(
            "send", "--template", "repair_assigned", "--to", RECIPIENT, "--context", context
        )
        took = _run(command, env)
        after = self.aws.sent()
        if (after["email"] - before["email"], after["sms"] - before["sms"]) != (1, 1):
            raise RuntimeError(f"send {self.count}: the stand-in got {before} -> {after}")
        return took


def _notifyops(*args: str) -> list[str]:
    return [sys.executable, "-m", "notifyops", *args]


def _run(command: list[str], env: Mapping[str, str]) -> float:
    """Run `command` to its end; its seconds from start to exit."""
    started = time.perf_counter()
    done = subprocess.run(command, env=dict(env), capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} exited {done.returncode}: {done.stderr}")
    return took


def _timed(runs: int, action: Callable[[], float]) -> list[float]:
    return [round(action(), 3) for _ in range(runs)]


@contextmanager
def _standby(env: Mapping[str, str], workdir: Path) -> Iterator[float]:
    """A running `notifyops standby`; yields the seconds it took to load."""
    log_path = workdir / "standby.log"
    started = time.perf_counter()
    with log_path.open("w") as out:
        process = subprocess.Popen(
            _notifyops("standby"), env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        while "standby: ready on" not in log_path.read_text():
            if process.poll() is not None or time.perf_counter() - started > READY_TIMEOUT_S:
                raise RuntimeError(f"the standby did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def _verify_sender(aws: LocalAws) -> None:
    import boto3

    from notify.settings import Settings

    ses = boto3.client("ses", endpoint_url=aws.url, region_name="us-east-1")
    verify_sender(ses, Settings.model_fields["email_from"].default)


def markdown(result: Mapping[str, Any]) -> str:
    samples = result["samples"]

    def cell(name: str) -> str:
        spread = f"{min(samples[name]):.2f} to {max(samples[name]):.2f}"
        return f"{result[name]:.2f} s ({spread})"

    rows = [
        ("`notifyops --help`", cell("help_s")),
        ("one-recipient `notifyops send`, no standby", cell("send_s")),
        ("the same send through `notifyops standby`", cell("send_standby_s")),
        ("`notifyops config` through the standby", cell("config_standby_s")),
        ('`python -c "import prefect"` (the machine\'s state)', cell("import_prefect_s")),
    ]
    lines = ["| command | median (min to max) |", "|---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines.append(
        f"\n{result['runs']} runs each; the standby took {result['standby_load_s']:.1f} s to "
        "load (once). A send's time runs from the command's start to its exit, when the AWS "
        "stand-in (moto, over HTTP) has both the email and the SMS."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
