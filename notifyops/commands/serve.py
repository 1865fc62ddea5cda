"""`notifyops serve`: the deployments of prefect.yaml, served by this process."""

from __future__ import annotations

import typer


def serve() -> None:
    """Run every deployment of prefect.yaml on this machine, without a work pool.

    Run it from the repository root; Ctrl-C stops it.
    """
    from deployments.serve import main

    raise typer.Exit(main([]))
