"""A local AWS stand-in for the demo: moto in server mode, in this process.

boto3 reaches it through AWS_ENDPOINT_URL, so the code under demonstration is the production code
path (real boto3 calls, real request signing, real error parsing). moto ships in the `dev` extra.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from notify.errors import NotifyError

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class LocalAws:
    url: str
    server: Any

    def sent(self) -> dict[str, int]:
        """How many emails and SMS the stand-in received."""
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=10) as response:
            data = json.load(response)
        emails = data.get("ses", {}).get("Message", [])
        sms = data.get("sns", {}).get("SMS", [])
        return {"email": len(emails), "sms": len(sms)}

    def stop(self) -> None:
        self.server.stop()


def start_local_aws(region: str) -> LocalAws:
    """Start moto on a free loopback port and point this process's boto3 at it."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise NotifyError(
            "the local AWS stand-in needs moto: pip install 'notifyops[dev]' "
            "(or set AWS_ENDPOINT_URL / real AWS credentials)"
        ) from None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on the terminal
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    _wait_until_ready(url)
    os.environ["AWS_ENDPOINT_URL"] = url
    os.environ.update(FAKE_CREDENTIALS | {"AWS_DEFAULT_REGION": region})
    return LocalAws(url=url, server=server)


def verify_sender(ses_client: Any, address: str) -> None:
    """Verify the sender identity (moto, like SES, rejects mail from unverified senders)."""
    ses_client.verify_email_identity(EmailAddress=address)


def _wait_until_ready(url: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise NotifyError(f"the local AWS stand-in did not answer at {url}") from None
            time.sleep(0.1)
