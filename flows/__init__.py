"""The Prefect flows (dispatch, delivery, monitoring, actions, receipts).

Prefect stores a run's parameters through FastAPI's JSON encoder and imports it (with FastAPI's
routing and OpenAPI models, ~0.1 s) inside the first run of a process; imported here, that
one-time cost is paid with the other imports, not by the first run."""

import fastapi.encoders  # noqa: F401
