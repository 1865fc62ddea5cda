"""Run every scheduled deployment of prefect.yaml in this process, without a work pool: the
embedded default for schedules on one machine.

    python -m deployments.serve        (or `notifyops serve`), from the repository root

prefect.yaml stays the one list: this reads it and serves each deployment that has a schedule, with
its parameters, tags and description. Ctrl-C or SIGTERM stops it (Prefect pauses the schedules).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.schedules import Cron

ROOT = Path(__file__).resolve().parents[1]


def load_deployments(path: Path = ROOT / "prefect.yaml") -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return list(yaml.safe_load(handle)["deployments"])


def load_flow(entrypoint: str) -> Any:
    """`flows/deliver.py:deliver_pending` -> the flow object."""
    file, name = entrypoint.split(":")
    module = file.removesuffix(".py").replace("/", ".")
    return getattr(importlib.import_module(module), name)


def to_served(spec: dict[str, Any]) -> Any:
    schedules = [
        Cron(
            item["cron"],
            timezone=item.get("timezone"),
            parameters=item.get("parameters"),
            slug=item.get("slug"),
        )
        for item in spec["schedules"]
    ]
    return load_flow(spec["entrypoint"]).to_deployment(
        name=spec["name"],
        description=spec.get("description"),
        tags=spec.get("tags"),
        parameters=spec.get("parameters") or {},
        schedules=schedules,
    )


def scheduled(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [spec for spec in specs if spec.get("schedules")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the scheduled deployments of prefect.yaml")
    parser.add_argument("--list", action="store_true", help="List what would be served and exit")
    args = parser.parse_args(argv)
    specs = scheduled(load_deployments())
    if args.list:
        for spec in specs:
            crons = ", ".join(item["cron"] for item in spec["schedules"])
            print(f"{spec['name']}: {spec['entrypoint']} [{crons}]")
        return 0
    serve(*[to_served(spec) for spec in specs])
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
