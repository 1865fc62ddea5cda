"""The Prefect flows (dispatch, delivery, monitoring, actions, receipts).

Prefect imports some modules inside the first run of a process: FastAPI's JSON encoder (with
FastAPI's routing and OpenAPI models, ~0.1 s), which stores a run's parameters; its flow and task
engines; its visualization helpers (with graphviz, 0.1-0.2 s), which every flow call imports;
the IDNA codec, which the first connection to the API loads (with unicodedata and stringprep).
Imported here, that one-time cost is paid with the other imports, not by the first run."""

import encodings.idna  # noqa: F401

import fastapi.encoders  # noqa: F401
import prefect.flow_engine
import prefect.task_engine
import prefect.utilities.visualization  # noqa: F401
