"""The Pushgateway push through prometheus_client: credentials, a URL naming its own
group, and the retries of `retry_call` (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import base64
import socket

import pytest

from tasks.core.backoff import RetriesExhausted, RetryPolicy, retry_call
from tasks.monitor.exposition import key, push_metrics, render_metrics
from tests.support.services import http_receiver

SAMPLES = {key("chatbot_backup_status", kind="db"): 1.0, key("chatbot_backup_monitor_status"): 0.0}


def test_credentials_in_the_url_become_basic_auth() -> None:
    with http_receiver() as receiver:
        gateway = receiver.url.replace("http://", "http://pusher:s%40cret-51@")
        push_metrics(gateway, SAMPLES, timeout=5)
        [push] = receiver.wait_for(1)
    assert push.path == f"/metrics/job/chatbot_backup/instance/{socket.gethostname()}"
    assert push.headers["Authorization"] == "Basic " + base64.b64encode(b"pusher:s@cret-51").decode(
        "ascii"
    )
    assert push.body.decode() == render_metrics(SAMPLES)


def test_a_url_that_names_its_group_keeps_it() -> None:
    with http_receiver() as receiver:
        push_metrics(receiver.url + "/metrics/job/nightly/instance/db1", SAMPLES, timeout=5)
        [push] = receiver.wait_for(1)
    assert push.path == "/metrics/job/nightly/instance/db1"
    assert "Authorization" not in push.headers


def test_a_failing_gateway_is_tried_three_times_and_named_without_secrets() -> None:
    with http_receiver(status=503) as receiver:
        gateway = receiver.url.replace("http://", "http://u:pushpw-88@")
        with pytest.raises(OSError) as raised:
            push_metrics(gateway, SAMPLES, timeout=5)
        assert len(receiver.requests) == 3
    assert str(raised.value) == "Pushgateway answered HTTP 503"


def test_a_client_error_is_not_retried() -> None:
    with http_receiver(status=401) as receiver:
        with pytest.raises(OSError, match="HTTP 401"):
            push_metrics(receiver.url, SAMPLES, timeout=5)
        assert len(receiver.requests) == 1


def test_retry_call_stops_at_max_attempts() -> None:
    calls: list[int] = []

    def fails() -> None:
        calls.append(1)
        raise TimeoutError("down")

    policy = RetryPolicy(window_seconds=1e9, first_delay=1, max_delay=1, max_attempts=4)
    with pytest.raises(RetriesExhausted) as raised:
        retry_call(fails, policy, lambda exc: True, sleep=lambda s: None)
    assert len(calls) == 4 and raised.value.attempts == 4
    assert policy.delays() == [1, 1, 1]
