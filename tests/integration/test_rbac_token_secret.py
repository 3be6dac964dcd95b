"""Whoever may write a RegionFailover cannot make the operator send another Secret's token anywhere.

``spec.signal.prometheusUrl`` and ``spec.signal.bearerTokenSecret`` are both the writer's
choice. The attack: a RegionFailover that names a Secret of the namespace holding some other
credential under ``token``, and a "Prometheus" of the attacker's. The operator reads a token
only from a Secret labelled ``regionshift.io/prometheus-token: "true"`` (its owner opted in):
here it sends nothing at all to that URL, and says why in the ``Detecting`` condition and an
Event. Once the Secret's owner labels it, the same RegionFailover gets the token sent, which
shows the label, and nothing else, is what stood in the way. The session operator runs with
the admin's credentials, so RBAC plays no part here (the chart also lets its ServiceAccount
read only the one Secret name it is given).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from regionshift.api.models import PROMETHEUS_TOKEN_LABEL
from tests.support.cluster import Kube, eventually
from tests.support.region_failover import region_failover
from tests.support.shared_signal import SignalScenario
from tests.support.synthetic_day import SyntheticDay

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("running_operator")]

SECRET_VALUE = "s3cret-of-the-database"


class Attacker:
    """An HTTP server of the attacker's: records the Authorization header of every request."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.headers.get("Authorization") or "")
                self.send_response(404)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    listening = Attacker()
    thread = threading.Thread(target=listening.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield listening
    finally:
        listening.server.shutdown()
        listening.server.server_close()


def detecting(kube: Kube) -> dict[str, str]:
    conditions = (kube.get_custom("regionfailovers", "steal").get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Detecting"), {})


def test_a_regionfailover_cannot_send_an_unlabelled_secret_to_a_url_of_its_choosing(
    kube: Kube, attacker: Attacker,
) -> None:
    kube.core.create_namespaced_secret(kube.namespace, {
        "metadata": {"name": "database"}, "data": {"token": base64.b64encode(SECRET_VALUE.encode()).decode()}})
    scenario = SignalScenario(name="steal", run=SyntheticDay(start=time.time(), levels={"east": 1.0, "west": 1.0}))
    kube.apply(region_failover(region="east", peers=[{"name": "west", "gatewayAddress": "192.0.2.10:8443"}],
                               prometheus_url=attacker.url, scenario=scenario, name="steal",
                               signal={"bearerTokenSecret": "database"}))

    condition = eventually(lambda: detecting(kube) if detecting(kube).get("reason") else None, timeout_seconds=60,
                           what="the Detecting condition")
    assert condition["status"] == "False" and condition["reason"] == "TokenSecretNotOptedIn", condition
    assert PROMETHEUS_TOKEN_LABEL in condition["message"] and "nothing was sent" in condition["message"]
    event = eventually(lambda: next((e for e in kube.events("steal") if e.reason == "DetectionPaused"), None),
                       timeout_seconds=30, what="a DetectionPaused Event")
    assert event.type == "Warning" and "TokenSecretNotOptedIn" in event.message
    time.sleep(3)  # several more detection runs (one a second), and sizing, each of which could have sent it
    assert attacker.seen == [], "nothing at all goes to the URL while the token cannot be read"

    kube.core.patch_namespaced_secret("database", kube.namespace,
                                      {"metadata": {"labels": {PROMETHEUS_TOKEN_LABEL: "true"}}})
    eventually(lambda: f"Bearer {SECRET_VALUE}" in attacker.seen, timeout_seconds=60,
               what="the token sent once its owner opted in")
