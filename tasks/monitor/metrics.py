"""Prometheus metrics: the textfile-collector file (`METRICS_FILE`) and the Pushgateway.

Owns the metric names, their help texts, and the file. Each writer (a backup run, the
monitor, a failure hook, an off-site copy) updates only its own series: the file is read,
merged and rewritten atomically under a small lock, so a db-backup run never erases the
full-backup series. Recording never raises; a metrics problem is logged and reported as
`False`, because it must not fail the backup it describes.

`chatbot_backup_count` is the guide's name; Prometheus' linter reserves the `_count`
suffix for summaries, so the count is published as the `_count` of a `chatbot_backup`
summary whose `_sum` is the total size of the retained backups. Queries see exactly the
guide's `chatbot_backup_count{kind="db"}`, and `promtool check metrics` is clean.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tasks.catalog.records import list_backups
from tasks.core.atomic import atomic_writer, remove_stale_partials_of
from tasks.core.naming import parse_backup_name
from tasks.core.redact import redact, strip_url_password

log = logging.getLogger("chatbot_backup")

Labels = tuple[tuple[str, str], ...]
SampleKey = tuple[str, Labels]

PUSH_JOB = "chatbot_backup"
PUSH_ATTEMPTS = 3
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


FAMILIES: tuple[Family, ...] = (
    Family(
        "chatbot_last_backup_timestamp_seconds",
        "gauge",
        "Unix time of the newest backup of each kind (from its name, UTC).",
        ("chatbot_last_backup_timestamp_seconds",),
    ),
    Family(
        "chatbot_backup_status",
        "gauge",
        "1 if the last backup run of each kind succeeded (and its file is readable), 0 if not.",
        ("chatbot_backup_status",),
    ),
    Family(
        "chatbot_last_backup_size_bytes",
        "gauge",
        "Size on disk of the newest backup of each kind.",
        ("chatbot_last_backup_size_bytes",),
    ),
    Family(
        "chatbot_backup",
        "summary",
        "Backups retained in BACKUP_DIR: _count is how many, _sum their total size in bytes.",
        ("chatbot_backup_count", "chatbot_backup_sum"),
    ),
    Family(
        "chatbot_offsite_backup_status",
        "gauge",
        "1 if the last off-site copy of each kind to each destination was verified, 0 if not.",
        ("chatbot_offsite_backup_status",),
    ),
    Family(
        "chatbot_last_backup_duration_seconds",
        "gauge",
        "How long the last successful backup run of each kind took.",
        ("chatbot_last_backup_duration_seconds",),
    ),
    Family(
        "chatbot_last_backup_failure_timestamp_seconds",
        "gauge",
        "Unix time of the last failed backup run of each kind.",
        ("chatbot_last_backup_failure_timestamp_seconds",),
    ),
    Family(
        "chatbot_job_last_failure_timestamp_seconds",
        "gauge",
        "Unix time of the last failed run of each job (restores, monitor, test-restore).",
        ("chatbot_job_last_failure_timestamp_seconds",),
    ),
    Family(
        "chatbot_backup_monitor_status",
        "gauge",
        "Outcome of the last monitor run: 0 all checks passed, 1 warnings, 2 critical.",
        ("chatbot_backup_monitor_status",),
    ),
    Family(
        "chatbot_backup_monitor_last_run_timestamp_seconds",
        "gauge",
        "Unix time of the last monitor run.",
        ("chatbot_backup_monitor_last_run_timestamp_seconds",),
    ),
)
_KNOWN_SAMPLES = {s for f in FAMILIES for s in f.samples}

_LINE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)(?:\s+\d+)?\s*$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def key(name: str, **labels: str) -> SampleKey:
    return name, tuple(sorted(labels.items()))


# -- text format -----------------------------------------------------------------------


def parse_metrics(text: str) -> dict[SampleKey, float]:
    """Our samples from an existing file; anything else (or malformed) is dropped."""
    samples: dict[SampleKey, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None or match.group("name") not in _KNOWN_SAMPLES:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        labels = tuple(
            sorted((k, _unescape(v)) for k, v in _LABEL.findall(match.group("labels") or ""))
        )
        samples[(match.group("name"), labels)] = value
    return samples


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render_metrics(samples: Mapping[SampleKey, float]) -> str:
    """Prometheus text format, families in a fixed order, series sorted by labels."""
    out: list[str] = []
    for family in FAMILIES:
        mine = sorted(
            ((k, v) for k, v in samples.items() if k[0] in family.samples),
            key=lambda item: (item[0][1], family.samples.index(item[0][0])),
        )
        if not mine:
            continue
        out.append(f"# HELP {family.name} {family.help}")
        out.append(f"# TYPE {family.name} {family.type}")
        for (name, labels), value in mine:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            series = f"{name}{{{label_text}}}" if label_text else name
            out.append(f"{series} {_format_value(value)}")
    return "\n".join(out) + "\n" if out else ""


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
        try:
            samples = parse_metrics(path.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            samples = {}
        for sample, value in updates.items():
            if value is None:
                samples.pop(sample, None)
            else:
                samples[sample] = float(value)
        for sample, value in (defaults or {}).items():
            samples.setdefault(sample, float(value))
        with atomic_writer(path, overwrite=True) as out:
            os.fchmod(out.fileno(), file_mode)
            out.write(render_metrics(samples).encode("utf-8"))
    return samples


# -- the Pushgateway -------------------------------------------------------------------


def push_url(gateway: str, instance: str) -> str:
    """`http://gw:9091` -> `http://gw:9091/metrics/job/chatbot_backup/instance/HOST`."""
    base = gateway.rstrip("/")
    if "/metrics/job/" in base:
        return base
    return f"{base}/metrics/job/{PUSH_JOB}/instance/{quote(instance, safe='')}"


def push_metrics(gateway: str, text: str, timeout: float = 10.0) -> None:
    """POST the whole set to the Pushgateway (our group); retries transient failures.

    Raises OSError with a message that carries no URL credentials.
    """
    url = push_url(gateway, socket.gethostname())
    request = urllib.request.Request(
        url,
        data=text.encode("utf-8"),
        method="POST",
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )
    delay = 0.5
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read(1024)
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == PUSH_ATTEMPTS:
                raise OSError(f"Pushgateway answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            if attempt == PUSH_ATTEMPTS:
                reason = getattr(exc, "reason", exc)
                raise OSError(f"cannot reach the Pushgateway ({reason})") from None
        time.sleep(delay)
        delay *= 2


# -- what the jobs call ------------------------------------------------------------------


def publish(
    settings: Any,
    updates: Mapping[SampleKey, float | None],
    defaults: Mapping[SampleKey, float] | None = None,
) -> bool:
    """Write `updates` to METRICS_FILE and push the result when a Pushgateway is set.

    Never raises; returns False (and logs why) when either step failed.
    """
    ok = True
    path: Path = settings.metrics_path
    try:
        private = path.is_relative_to(settings.backups)
        samples = update_metrics_file(path, updates, defaults, private)
    except OSError as exc:
        log.warning("metrics not written to %s: %s", path, redact(str(exc)))
        return False
    gateway = settings.prometheus_pushgateway
    if gateway:
        try:
            push_metrics(gateway, render_metrics(samples), getattr(settings, "alert_timeout", 10.0))
        except OSError as exc:
            log.warning(
                "metrics not pushed to %s: %s",
                strip_url_password(redact(gateway)),
                redact(str(exc)),
            )
            ok = False
    return ok


def _count_and_bytes(folder: Path, kind: str) -> tuple[int, int]:
    mine = [b for b in list_backups(folder) if b.kind == kind and b.good]  # as the monitor counts
    return len(mine), sum(b.size for b in mine)


def record_backup_success(
    settings: Any,
    kind: str,
    path: Path,
    size: int,
    seconds: float,
    count: int | None = None,
) -> bool:
    """After a successful backup run of `kind` ("db" or "full") that wrote `path`.

    `count` defaults to the number of backups of that kind now in the folder.
    """
    parsed = parse_backup_name(Path(path).name)
    stamp = parsed.created_at.timestamp() if parsed else time.time()
    counted, total = _count_and_bytes(Path(path).parent, kind)
    return publish(
        settings,
        {
            key("chatbot_last_backup_timestamp_seconds", kind=kind): stamp,
            key("chatbot_backup_status", kind=kind): 1,
            key("chatbot_last_backup_size_bytes", kind=kind): size,
            key("chatbot_backup_count", kind=kind): counted if count is None else count,
            key("chatbot_backup_sum", kind=kind): total,
            key("chatbot_last_backup_duration_seconds", kind=kind): round(seconds, 3),
        },
    )


def record_backup_failure(settings: Any, kind: str, when: float | None = None) -> bool:
    """A backup run of `kind` failed: status 0 and the failure time."""
    return publish(
        settings,
        {
            key("chatbot_backup_status", kind=kind): 0,
            key("chatbot_last_backup_failure_timestamp_seconds", kind=kind): when or time.time(),
        },
    )


def record_job_failure(settings: Any, job: str, when: float | None = None) -> bool:
    """A non-backup job (restore, monitor, test-restore) failed."""
    return publish(
        settings, {key("chatbot_job_last_failure_timestamp_seconds", job=job): when or time.time()}
    )


def record_offsite_status(
    settings: Any, kind: str, scheme: str, ok: bool, destination: str | None = None
) -> bool:
    """The outcome of an off-site copy of a `kind` backup to one destination.

    `scheme` is the destination's scheme (s3, gs, az, ssh, file); `destination` its
    display form (`s3://bucket/prefix`, `user@host:/path`), which never carries a secret.
    """
    labels = {"kind": kind, "scheme": scheme}
    updates: dict[SampleKey, float | None] = {}
    if destination:
        labels["destination"] = strip_url_password(destination)
        # The series of the single-destination days, without the label, would stay forever.
        updates[key("chatbot_offsite_backup_status", kind=kind, scheme=scheme)] = None
    updates[key("chatbot_offsite_backup_status", **labels)] = 1 if ok else 0
    return publish(settings, updates)


def offsite_scheme(destination: str) -> str:
    """The label value for a destination: its scheme, `ssh` for user@host:/path, else `file`."""
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", destination)
    if match:
        return match.group(1).lower()
    if re.match(r"^[^/\s:]+@[^/\s:]+:", destination):
        return "ssh"
    return "file"


@dataclass(frozen=True)
class KindSnapshot:
    """What the monitor saw of one kind of backup in the folder."""

    count: int
    total_bytes: int
    newest_timestamp: float | None = None
    newest_size: int | None = None
    damaged: bool = False


def record_monitor_run(
    settings: Any, kinds: Mapping[str, KindSnapshot], status_code: int, when: float | None = None
) -> bool:
    """The monitor's view of the folder (the catalog is the truth, whoever made the files).

    A damaged newest backup sets `chatbot_backup_status` to 0; otherwise the status the
    last backup run recorded is kept (1 when none was recorded, e.g. for backups made by
    the guide's shell scripts).
    """
    updates: dict[SampleKey, float | None] = {
        key("chatbot_backup_monitor_status"): status_code,
        key("chatbot_backup_monitor_last_run_timestamp_seconds"): when or time.time(),
    }
    defaults: dict[SampleKey, float] = {}
    kinds = {**{k: KindSnapshot(0, 0) for k in _recorded_kinds(settings.metrics_path)}, **kinds}
    for kind, seen in kinds.items():
        updates[key("chatbot_backup_count", kind=kind)] = seen.count
        updates[key("chatbot_backup_sum", kind=kind)] = seen.total_bytes
        if seen.newest_timestamp is not None:
            updates[key("chatbot_last_backup_timestamp_seconds", kind=kind)] = seen.newest_timestamp
        if seen.newest_size is not None:
            updates[key("chatbot_last_backup_size_bytes", kind=kind)] = seen.newest_size
        if seen.damaged:
            updates[key("chatbot_backup_status", kind=kind)] = 0
        elif seen.newest_timestamp is not None:
            defaults[key("chatbot_backup_status", kind=kind)] = 1
    return publish(settings, updates, defaults)


def _recorded_kinds(path: Path) -> set[str]:
    """Kinds the file already counts: when their backups vanish, their count drops to 0."""
    try:
        samples = parse_metrics(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return set()
    return {
        dict(labels).get("kind", "")
        for name, labels in samples
        if name == "chatbot_backup_count" and dict(labels).get("kind")
    }
