"""How the metrics are kept and sent: their families, the Prometheus text format, the
textfile-collector file (`METRICS_FILE`) and the Pushgateway.

The text format, its parsing and the push are `prometheus_client`'s; what is ours is the
merge: each writer updates only its own series, so the file is read, merged and rewritten
atomically (fsync, rename) under a small lock, with the file's mode set before a byte is
written. `tasks.monitor.metrics` says what each job records.

`chatbot_backup_count` is the guide's name; Prometheus' linter reserves the `_count`
suffix for summaries, so the count is published as the `_count` of a `chatbot_backup`
summary whose `_sum` is the total size of the retained backups. Queries see exactly the
guide's `chatbot_backup_count{kind="db"}`, and `promtool check metrics` is clean.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import socket
import urllib.error
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import basic_auth_handler, pushadd_to_gateway
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tasks.core.atomic import atomic_writer, remove_stale_partials_of
from tasks.core.backoff import RetriesExhausted, RetryPolicy, retry_call

Labels = tuple[tuple[str, str], ...]
SampleKey = tuple[str, Labels]

PUSH_JOB = "chatbot_backup"
PUSH_ATTEMPTS = 3
PUSH_RETRY = RetryPolicy(
    window_seconds=math.inf, first_delay=0.5, max_delay=math.inf, max_attempts=PUSH_ATTEMPTS
)
# Inside BACKUP_DIR the metrics are as private as the backups (SPEC: files 0600, folders
# 0700). Elsewhere — node_exporter's textfile folder — node_exporter runs as another user
# and must read them; they hold no secret.
PRIVATE_MODES = (0o600, 0o700)  # file, folder
SHARED_MODES = (0o644, 0o755)


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    help: str
    samples: tuple[str, ...]


def _gauge(name: str, help_text: str) -> Family:
    return Family(name, "gauge", help_text, (name,))


FAMILIES: tuple[Family, ...] = (
    _gauge(
        "chatbot_last_backup_timestamp_seconds",
        "Unix time of the newest backup of each kind (from its name, UTC).",
    ),
    _gauge(
        "chatbot_backup_status",
        "1 if the last backup run of each kind succeeded (and its file is readable), 0 if not.",
    ),
    _gauge("chatbot_last_backup_size_bytes", "Size on disk of the newest backup of each kind."),
    Family(
        "chatbot_backup",
        "summary",
        "Backups retained in BACKUP_DIR: _count is how many, _sum their total size in bytes.",
        ("chatbot_backup_count", "chatbot_backup_sum"),
    ),
    _gauge(
        "chatbot_offsite_backup_status",
        "1 if the last off-site copy of each kind to each destination was verified, 0 if not.",
    ),
    _gauge(
        "chatbot_last_backup_duration_seconds",
        "How long the last successful backup run of each kind took.",
    ),
    _gauge(
        "chatbot_last_backup_failure_timestamp_seconds",
        "Unix time of the last failed backup run of each kind.",
    ),
    _gauge(
        "chatbot_job_last_failure_timestamp_seconds",
        "Unix time of the last failed run of each job (restores, monitor, test-restore).",
    ),
    _gauge(
        "chatbot_restore_proof_status",
        "Outcome of the last test-restore of each kind: 1 every check passed, 0 not.",
    ),
    _gauge(
        "chatbot_last_restore_proof_timestamp_seconds",
        "Unix time of the last test-restore of each kind.",
    ),
    _gauge(
        "chatbot_last_restore_proof_backup_timestamp_seconds",
        "Unix time the backup that the last test-restore of each kind tested was made.",
    ),
    _gauge(
        "chatbot_backup_monitor_status",
        "Outcome of the last monitor run: 0 all checks passed, 1 warnings, 2 critical.",
    ),
    _gauge(
        "chatbot_backup_monitor_last_run_timestamp_seconds", "Unix time of the last monitor run."
    ),
    _gauge(
        "chatbot_wal_last_archived_timestamp_seconds",
        "Unix time PostgreSQL last archived a WAL segment (pg_stat_archiver; PITR_ENABLED).",
    ),
    _gauge(
        "chatbot_dr_drill_success",
        "1 if the last DR drill of each scenario restored and met its RTO and RPO, 0 if not.",
    ),
    _gauge(
        "chatbot_dr_drill_seconds",
        "How long the last DR drill of each scenario took, fetch to last check.",
    ),
    _gauge(
        "chatbot_dr_drill_timestamp_seconds",
        "Unix time of the last successful DR drill of each scenario (0: none yet).",
    ),
)
_KNOWN_SAMPLES = {s for f in FAMILIES for s in f.samples}


def key(name: str, **labels: str) -> SampleKey:
    return name, tuple(sorted(labels.items()))


# -- text format -----------------------------------------------------------------------


def parse_metrics(text: str) -> dict[SampleKey, float]:
    """Our samples from an existing file; anything else (or malformed) is dropped.

    Line by line, so that one damaged line costs only its own sample.
    """
    samples: dict[SampleKey, float] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        try:
            families = list(text_string_to_metric_families(line + "\n"))
        except ValueError:
            continue
        for family in families:
            for sample in family.samples:
                if sample.name in _KNOWN_SAMPLES:
                    labels = tuple(sorted(sample.labels.items()))
                    samples[(sample.name, labels)] = float(sample.value)
    return samples


class _Samples:
    """A collector of our samples: families in a fixed order, series sorted by labels."""

    def __init__(self, samples: Mapping[SampleKey, float]) -> None:
        self._samples = dict(samples)

    def collect(self) -> Iterator[Metric]:
        for family in FAMILIES:
            mine = sorted(
                ((k, v) for k, v in self._samples.items() if k[0] in family.samples),
                key=lambda item: (item[0][1], family.samples.index(item[0][0])),
            )
            if not mine:
                continue
            metric = Metric(family.name, family.help, family.type)
            for (name, labels), value in mine:
                metric.add_sample(name, dict(labels), value)
            yield metric


def registry_of(samples: Mapping[SampleKey, float]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Samples(samples))
    return registry


def render_metrics(samples: Mapping[SampleKey, float]) -> str:
    """The Prometheus text format (version 0.0.4) of `samples`."""
    return generate_latest(registry_of(samples)).decode("utf-8")


# -- the file ----------------------------------------------------------------------


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise read-merge-write between concurrent jobs (the kernel drops it on exit)."""
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ensure_folder(path: Path, mode: int) -> None:
    """Create the metrics folder itself if needed, but never its parents.

    With the default METRICS_FILE under BACKUP_DIR, a monitor run must not create a
    missing backup folder (that would hide the very finding it reports).
    """
    folder = path.parent
    if folder.is_dir():
        return
    if not folder.parent.is_dir():
        raise FileNotFoundError(f"{folder.parent} does not exist")
    folder.mkdir(mode=mode, exist_ok=True)
    os.chmod(folder, mode)  # whatever the umask


def read_metrics_file(path: Path) -> dict[SampleKey, float]:
    """The samples the file holds now (none when it is missing)."""
    try:
        return parse_metrics(path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return {}


def update_metrics_file(
    path: Path,
    updates: Mapping[SampleKey, float | None],
    defaults: Mapping[SampleKey, float] | None = None,
    private: bool = True,
) -> dict[SampleKey, float]:
    """Merge `updates` (None removes a series) into the file; returns the full set.

    `defaults` are set only for series the file does not have yet. `private` selects
    0600/0700 modes, else 0644/0755 (see PRIVATE_MODES).
    """
    file_mode, dir_mode = PRIVATE_MODES if private else SHARED_MODES
    _ensure_folder(path, dir_mode)
    with _file_lock(path):
        # A writer killed mid-write left its partial file; nobody else can be writing now.
        remove_stale_partials_of(path)
        samples = read_metrics_file(path)
        for sample, value in updates.items():
            if value is None:
                samples.pop(sample, None)
            else:
                samples[sample] = float(value)
        for sample, value in (defaults or {}).items():
            samples.setdefault(sample, float(value))
        with atomic_writer(path, overwrite=True) as out:  # fsync, rename, fsync the folder
            os.fchmod(out.fileno(), file_mode)
            out.write(render_metrics(samples).encode("utf-8"))
    return samples


# -- the Pushgateway -------------------------------------------------------------------


def push_target(gateway: str, instance: str) -> tuple[str, str, dict[str, str], Callable[..., Any]]:
    """(base URL without credentials, job, grouping key, request handler) for `gateway`.

    `http://gw:9091` pushes to `/metrics/job/chatbot_backup/instance/HOST`; a URL that
    already names its group (`.../metrics/job/J/instance/I`) keeps it. Credentials in the
    URL go into a Basic auth header, never into the URL that errors could quote.
    """
    parts = urlsplit(gateway if "://" in gateway else f"http://{gateway}")
    netloc = parts.netloc.rpartition("@")[2]
    handler: Callable[..., Any] = basic_auth_handler
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None

    def authed(url: str, method: str, timeout: float | None, headers: Any, data: bytes) -> Any:
        return handler(url, method, timeout, headers, data, user, password)

    path, job, grouping = parts.path.rstrip("/"), PUSH_JOB, {"instance": instance}
    if "/metrics/job/" in path:
        path, _, group = path.partition("/metrics/job/")
        job, *rest = [unquote(s) for s in group.split("/")]
        grouping = dict(zip(rest[::2], rest[1::2], strict=False))
    base = urlunsplit((parts.scheme, netloc, path, "", ""))
    return base, job, grouping, authed


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500
    return isinstance(exc, OSError)


def push_metrics(gateway: str, samples: Mapping[SampleKey, float], timeout: float = 10.0) -> None:
    """POST the whole set to the Pushgateway (our group); retries transient failures.

    Raises OSError with a message that carries no URL credentials.
    """
    base, job, grouping, handler = push_target(gateway, socket.gethostname())
    registry = registry_of(samples)

    def push() -> None:
        pushadd_to_gateway(base, job, registry, grouping, timeout=timeout, handler=handler)

    try:
        retry_call(push, PUSH_RETRY, _transient)
    except RetriesExhausted as exc:
        raise _push_error(exc.last) from None
    except (OSError, ValueError) as exc:
        raise _push_error(exc) from None


def _push_error(exc: BaseException) -> OSError:
    if isinstance(exc, urllib.error.HTTPError):
        return OSError(f"Pushgateway answered HTTP {exc.code}")
    if isinstance(exc, ValueError):
        return OSError("the Pushgateway URL is not a valid http(s) URL")
    reason = getattr(exc, "reason", exc)
    return OSError(f"cannot reach the Pushgateway ({reason})")
