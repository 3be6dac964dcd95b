"""The Prometheus client against a real Prometheus, and against servers that misbehave.

The client's error mapping is only worth something if it matches what Prometheus really
answers (status codes, ``errorType``, how NaN is spelled, the resolution limit), and the
signal code relies on lookback and staleness as Prometheus implements them. So the queries
run against Debian's ``prometheus`` holding three weeks of backfilled history and scraping a
live exporter; failures Prometheus cannot be made to produce on demand (refused connections,
hangs, 5xx, 429, TLS) come from real loopback sockets. Only the bearer-token header, which a
real Prometheus cannot show back, is checked on a mock transport.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from regionshift.errors import NoData, NotANumber, PrometheusUnavailable, QueryRejected
from regionshift.adapters.prometheus import MAX_POINTS_PER_SERIES, PrometheusClient
from tests.support.prometheus_server import REFERENCE_REGIONS, Metric, PrometheusServer

DAY = dt.timedelta(days=1)
ONE_VALUE = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1700000000, "42"]}]},
}


class CountingTransport(httpx.AsyncBaseTransport):
    """The real network transport, counting the requests that go through it."""

    def __init__(self) -> None:
        self.requests = 0
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def utc(unix_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix_seconds, tz=dt.UTC)


def reference(server: PrometheusServer, region: str) -> list[tuple[float, float]]:
    """The samples backfilled for ``sps{region=...}``."""
    return list(server.history[Metric.of("sps", region=region)])


async def eventually(check: Callable[[], Awaitable[bool]], *, within_seconds: float) -> None:
    """Poll ``check`` until it holds; fail after ``within_seconds``."""
    deadline = time.monotonic() + within_seconds
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within_seconds} s")
        await asyncio.sleep(0.2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CannedServer:
    """A loopback HTTP(S) server answering each request with the next canned response."""

    def __init__(self, answers: list[tuple[int, str, str]], tls: ssl.SSLContext | None) -> None:
        self.requests = 0
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, content_type, body = answers[min(canned.requests, len(answers) - 1)]
                canned.requests += 1
                payload = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                """Keep requests out of the test output."""

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                """A client refusing our certificate is part of the test, not an error."""

        self.server = Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]


@contextmanager
def canned(
    *answers: tuple[int, str, str], tls: ssl.SSLContext | None = None
) -> Iterator[CannedServer]:
    server = CannedServer(list(answers), tls)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join()


def json_answer(status: int, body: object) -> tuple[int, str, str]:
    return status, "application/json", json.dumps(body)


@pytest.mark.integration
async def test_range_query_returns_weeks_of_backfilled_history(
    prometheus_server: PrometheusServer,
) -> None:
    east = reference(prometheus_server, "us-east")
    step = 300.0  # the history is sampled every 60 s: every fifth sample
    async with PrometheusClient(base_url=prometheus_server.url) as prometheus:
        answer = await prometheus.range(
            "sps", start=utc(east[0][0]), end=utc(east[-1][0]), step_seconds=step
        )
    assert east[-1][0] - east[0][0] >= 21 * DAY.total_seconds()
    by_region = {series.labels["region"]: series for series in answer}
    assert set(by_region) == set(REFERENCE_REGIONS)
    for region, series in by_region.items():
        assert series.labels == {"__name__": "sps", "region": region}
        assert series.samples == tuple(reference(prometheus_server, region)[::5])


@pytest.mark.integration
async def test_range_beyond_the_resolution_limit_is_fetched_in_parts(
    prometheus_server: PrometheusServer,
) -> None:
    west = reference(prometheus_server, "us-west")
    fourteen_days = west[-(14 * 1440 + 1) :]
    assert len(fourteen_days) > MAX_POINTS_PER_SERIES
    transport = CountingTransport()
    async with PrometheusClient(base_url=prometheus_server.url, transport=transport) as prometheus:
        samples = await prometheus.range_values(
            'sps{region="us-west"}',
            start=utc(fourteen_days[0][0]),
            end=utc(fourteen_days[-1][0]),
            step_seconds=60,
        )
    assert samples == tuple(fourteen_days)
    assert transport.requests == 2


@pytest.mark.integration
async def test_range_points_are_the_same_samples_as_one_array_fetched_in_parts(
    prometheus_server: PrometheusServer,
) -> None:
    west = reference(prometheus_server, "us-west")
    fourteen_days = west[-(14 * 1440 + 1) :]
    transport = CountingTransport()
    start, end = utc(fourteen_days[0][0]), utc(fourteen_days[-1][0])
    async with PrometheusClient(base_url=prometheus_server.url, transport=transport) as prometheus:
        points = await prometheus.range_points('sps{region="us-west"}', start=start, end=end, step_seconds=60)
        assert points.dtype == np.float64 and points.shape == (len(fourteen_days), 2)
        assert [tuple(p) for p in points.tolist()] == list(fourteen_days)
        assert transport.requests == 2
        with pytest.raises(QueryRejected, match="2 series where one is needed|3 series where one is needed"):
            await prometheus.range_points("sps", start=start, end=end, step_seconds=3600)
        with pytest.raises(NoData):
            await prometheus.range_points("no_such_metric", start=start, end=end, step_seconds=3600)
        nan = await prometheus.range_points("0/0", start=end - DAY, end=end, step_seconds=3600)
        assert nan.shape == (25, 2) and np.isnan(nan[:, 1]).all()


@pytest.mark.integration
async def test_instant_query_at_a_past_moment_returns_the_backfilled_value(
    prometheus_server: PrometheusServer,
) -> None:
    three_days_ago = len(reference(prometheus_server, "eu-west")) - 3 * 1440
    (moment, value), (_, next_value) = reference(prometheus_server, "eu-west")[
        three_days_ago : three_days_ago + 2
    ]
    async with PrometheusClient(base_url=prometheus_server.url) as prometheus:
        assert await prometheus.instant_value('sps{region="eu-west"}', at=utc(moment)) == value
        (series,) = await prometheus.instant('sps{region="eu-west"}', at=utc(moment + 90))
    # The newest sample within the lookback (the one at +60 s), stamped with the query time.
    assert series.samples == ((moment + 90, next_value),)


@pytest.mark.integration
async def test_instant_query_sees_a_value_the_live_exporter_serves(
    prometheus_server: PrometheusServer,
) -> None:
    query = 'regionshift_test_live{region="us-east"}'
    prometheus_server.exporter.set("regionshift_test_live", {"region": "us-east"}, 123.0)
    async with PrometheusClient(base_url=prometheus_server.url) as prometheus:

        async def scraped() -> bool:
            try:
                return await prometheus.instant_value(query) == 123.0
            except NoData:
                return False

        await eventually(scraped, within_seconds=15)
        (series,) = await prometheus.instant(query)
    # Target labels are dropped so live samples continue backfilled series of the same name.
    assert series.labels == {"__name__": "regionshift_test_live", "region": "us-east"}


@pytest.mark.integration
async def test_live_samples_continue_the_backfilled_series_of_the_same_name() -> None:
    end = time.time() // 60 * 60
    metric = Metric.of("regionshift_test_signal", region="us-east")
    history = {metric: [(end - 600 + 60 * minute, 10.0) for minute in range(11)]}
    with PrometheusServer(history=history) as server:
        server.exporter.set("regionshift_test_signal", {"region": "us-east"}, 20.0)
        await asyncio.to_thread(server.exporter.wait_for_scrapes, 2)
        async with PrometheusClient(base_url=server.url) as prometheus:
            samples = await prometheus.range_values(
                "regionshift_test_signal",
                start=utc(end - 600),
                end=dt.datetime.now(tz=dt.UTC),
                step_seconds=1,
            )
    values = [value for _, value in samples]
    assert values[0] == 10.0
    assert values[-1] == 20.0
    assert values == sorted(values)  # one series: the history, then the present


@pytest.mark.integration
async def test_a_series_the_exporter_stops_serving_is_gone_at_the_next_scrape(
    prometheus_server: PrometheusServer,
) -> None:
    query = 'regionshift_test_stale{region="us-west"}'
    exporter = prometheus_server.exporter
    exporter.set("regionshift_test_stale", {"region": "us-west"}, 7.0)
    async with PrometheusClient(base_url=prometheus_server.url) as prometheus:

        async def present() -> bool:
            try:
                return await prometheus.instant_value(query) == 7.0
            except NoData:
                return False

        await eventually(present, within_seconds=15)
        exporter.remove("regionshift_test_stale", {"region": "us-west"})
        await asyncio.to_thread(exporter.wait_for_scrapes, 2)
        # Well within the 5-minute lookback: the staleness marker ends the series at once.
        with pytest.raises(NoData):
            await prometheus.instant_value(query)


@pytest.mark.integration
async def test_an_unknown_series_raises_no_data(prometheus_server: PrometheusServer) -> None:
    now = dt.datetime.now(tz=dt.UTC)
    async with PrometheusClient(base_url=prometheus_server.url) as prometheus:
        with pytest.raises(NoData, match="regionshift_no_such_metric"):
            await prometheus.instant("regionshift_no_such_metric")
        with pytest.raises(NoData, match="regionshift_no_such_metric"):
            await prometheus.range(
                "regionshift_no_such_metric", start=now - DAY, end=now, step_seconds=60
            )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("sum(sps", "parse error"),  # HTTP 400, bad_data
        ("sps * on() sps", "many-to-many matching not allowed"),  # HTTP 422, execution
    ],
)
async def test_a_bad_query_is_rejected_at_once_with_prometheus_reason(
    prometheus_server: PrometheusServer, query: str, problem: str
) -> None:
    transport = CountingTransport()
    async with PrometheusClient(
        base_url=prometheus_server.url, retries=3, transport=transport
    ) as prometheus:
        with pytest.raises(QueryRejected) as rejected:
            await prometheus.instant_value(query)
    assert problem in str(rejected.value)
    assert repr(query) in str(rejected.value)
    assert transport.requests == 1


@pytest.mark.integration
@pytest.mark.parametrize("query", ["0/0", "1/0"])
async def test_nan_and_infinity_raise_not_a_number_where_a_number_is_needed(
    prometheus_server: PrometheusServer, query: str
) -> None:
    now = dt.datetime.now(tz=dt.UTC)
    async with PrometheusClient(base_url=prometheus_server.url) as prometheus:
        (series,) = await prometheus.instant(query)
        assert series.labels == {}  # a scalar answer
        with pytest.raises(NotANumber, match="evaluated to (nan|inf)"):
            await prometheus.instant_value(query)
        with pytest.raises(NotANumber):
            await prometheus.range_values(query, start=now - DAY, end=now, step_seconds=3600)


@pytest.mark.integration
async def test_several_series_where_one_value_is_needed_is_rejected(
    prometheus_server: PrometheusServer,
) -> None:
    async with PrometheusClient(base_url=prometheus_server.url) as prometheus:
        with pytest.raises(QueryRejected, match="returned 3 series where one is needed"):
            await prometheus.instant_value("sps")
        assert await prometheus.instant_value("count(sps)") == len(REFERENCE_REGIONS)


async def test_a_closed_port_raises_unavailable_after_every_retry_with_backoff() -> None:
    transport = CountingTransport()
    started = time.monotonic()
    async with PrometheusClient(
        base_url=f"http://127.0.0.1:{free_port()}",
        retries=2,
        backoff_seconds=0.2,
        transport=transport,
    ) as prometheus:
        with pytest.raises(PrometheusUnavailable, match="after 3 attempt.*ConnectError"):
            await prometheus.instant_value("up")
    assert transport.requests == 3
    assert time.monotonic() - started >= 0.2 + 0.4


@pytest.mark.parametrize(
    ("status", "error"),
    [(503, "query timed out in expression evaluation"), (429, "too many requests")],
)
async def test_server_errors_and_throttling_are_retried_then_reported(
    status: int, error: str
) -> None:
    answer = json_answer(status, {"status": "error", "errorType": "timeout", "error": error})
    with canned(answer, tls=None) as server:
        async with PrometheusClient(
            base_url=f"http://127.0.0.1:{server.port}", retries=2, backoff_seconds=0.01
        ) as prometheus:
            with pytest.raises(PrometheusUnavailable, match=f"HTTP {status}: {error}"):
                await prometheus.instant_value("up")
    assert server.requests == 3


async def test_a_transient_server_error_is_retried_until_it_clears() -> None:
    unavailable = json_answer(503, {"status": "error", "errorType": "unavailable", "error": "x"})
    with canned(unavailable, json_answer(200, ONE_VALUE), tls=None) as server:
        async with PrometheusClient(
            base_url=f"http://127.0.0.1:{server.port}", retries=2, backoff_seconds=0.01
        ) as prometheus:
            assert await prometheus.instant_value("up") == 42.0
    assert server.requests == 2


async def test_an_answer_that_is_not_the_prometheus_api_is_not_retried() -> None:
    login_page = (200, "text/html", "<html>please log in</html>")
    with canned(login_page, tls=None) as server:
        async with PrometheusClient(
            base_url=f"http://127.0.0.1:{server.port}", retries=2, backoff_seconds=0.01
        ) as prometheus:
            with pytest.raises(PrometheusUnavailable, match="not a Prometheus API answer"):
                await prometheus.instant_value("up")
    assert server.requests == 1


async def test_the_timeout_bounds_each_attempt_against_a_server_that_never_answers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the connection; nobody ever reads or answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        async with PrometheusClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout_seconds=0.5,
            retries=1,
            backoff_seconds=0.0,
        ) as prometheus:
            with pytest.raises(PrometheusUnavailable, match="no answer within 0.5 s"):
                await prometheus.instant_value("up")
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 3.0


async def test_bearer_token_header_sent_mock_transport() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ONE_VALUE)

    async with PrometheusClient(
        base_url="http://prometheus.invalid:9090/prefix",
        bearer_token="s3cr3t",
        transport=httpx.MockTransport(answer),
    ) as prometheus:
        assert await prometheus.instant_value("up") == 42.0
    (request,) = seen
    assert request.headers["Authorization"] == "Bearer s3cr3t"
    assert request.url.path == "/prefix/api/v1/query"


def self_signed(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1 (its own CA): the CA file and a server context using it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regionshift test")])
    now = dt.datetime.now(tz=dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca_file, key_file)
    return ca_file, context


async def test_tls_is_verified_against_the_given_ca_file(tmp_path: Path) -> None:
    ca_file, server_context = self_signed(tmp_path)
    with canned(json_answer(200, ONE_VALUE), tls=server_context) as server:
        url = f"https://127.0.0.1:{server.port}"
        async with PrometheusClient(base_url=url, verify_tls=str(ca_file)) as prometheus:
            assert await prometheus.instant_value("up") == 42.0
        async with PrometheusClient(base_url=url, retries=0, verify_tls=True) as prometheus:
            with pytest.raises(PrometheusUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                await prometheus.instant_value("up")


async def test_a_naive_datetime_is_refused() -> None:
    async with PrometheusClient(base_url="http://127.0.0.1:1") as prometheus:
        with pytest.raises(ValueError, match="timezone-aware"):
            await prometheus.instant("up", at=dt.datetime(2026, 1, 1))

