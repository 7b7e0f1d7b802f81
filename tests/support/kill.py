"""kill -9 at seeded random moments: a pre-forked runner of the real CLI.

A CLI run spends ~3 s in start-up (imports ~1.7 s, Prefect's engine ~1.2 s) before any
work, so killing at uniform moments of a subprocess would mostly hit the imports. The
`ForkingCli` worker is a Python process that imports `flows.cli` once (no thread is
running then, so forking is safe) and forks one child per run; the child sets the run's
environment and working folder and calls the real `flows.cli.main(argv)` — the same
code path as the console script, minus the repeated imports. Each child leads its own
process group, so `kill` takes its pg_dump/psql/age children down with it, as a crash of
the machine would.

`Moments` spreads the kills: a seeded fraction lands in the start-up (before the run's
work marker appears), the rest at a seeded delay within the measured work phase.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_WORKER = r"""
import json, os, sys
import flows.cli
# every flow imported once here, not again in each forked child (flows/ imports lazily)
import flows.backup_all_flow, flows.db_backup_flow, flows.db_restore_flow, flows.offsite_flow, flows.restore_all_flow
for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "reap":
        _, status = os.waitpid(request["pid"], 0)
        code = os.waitstatus_to_exitcode(status)
        print(json.dumps({"code": code}), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            os.chdir(request["cwd"])
            os.environ.update(request["env"])
            out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, 1)
            os.dup2(out, 2)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            code = flows.cli.main(request["argv"])
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code or 0)
        except SystemExit as exc:
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        except BaseException:
            import traceback; traceback.print_exc(); sys.stderr.flush()
            os._exit(99)
    print(json.dumps({"pid": pid}), flush=True)
"""


class ForkingCli:
    """One worker process per test; `start` forks a child running `flows.cli.main`."""

    def __init__(self, env: dict[str, str], cwd: Path, logs: Path) -> None:
        # Prefect freezes its settings at import: PREFECT_API_URL must be in the worker's env.
        self.env, self.cwd, self.logs = env, cwd, logs
        logs.mkdir(parents=True, exist_ok=True)
        self._worker = subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
            cwd=cwd,
        )
        self._runs = 0

    def _ask(self, request: dict[str, object]) -> dict[str, int]:
        assert self._worker.stdin and self._worker.stdout
        self._worker.stdin.write(json.dumps(request) + "\n")
        self._worker.stdin.flush()
        answer = self._worker.stdout.readline()
        assert answer, "the forking worker died"
        return json.loads(answer)

    def start(self, *argv: str, extra_env: dict[str, str] | None = None) -> tuple[int, Path]:
        self._runs += 1
        log = self.logs / f"run-{self._runs}.log"
        request: dict[str, object] = {
            "op": "run",
            "argv": list(argv),
            "cwd": str(self.cwd),
            "env": {**self.env, **(extra_env or {})},
            "log": str(log),
        }
        return self._ask(request)["pid"], log

    def wait(self, pid: int) -> int:
        return self._ask({"op": "reap", "pid": pid})["code"]

    def run(self, *argv: str, extra_env: dict[str, str] | None = None) -> tuple[int, str]:
        """A whole run, not killed: exit code and its output."""
        pid, log = self.start(*argv, extra_env=extra_env)
        code = self.wait(pid)
        return code, log.read_text(errors="replace")

    def close(self) -> None:
        if self._worker.stdin:
            self._worker.stdin.close()
        self._worker.wait(timeout=30)


@dataclass
class KillOutcome:
    killed: bool  # False: the run ended on its own before the chosen moment
    code: int
    at: float  # seconds after start
    log: str


class Moments:
    """Seeded kill moments: some in start-up, the rest within the measured work phase."""

    def __init__(self, seed: int, startup: float, work: float, startup_share: float = 0.2):
        self.rng = random.Random(seed)
        self.startup, self.work, self.startup_share = startup, work, startup_share

    def kill_one(
        self,
        cli: ForkingCli,
        argv: tuple[str, ...],
        make_marker: Callable[[], Callable[[], bool]],
        extra_env: dict[str, str] | None = None,
    ) -> KillOutcome:
        in_startup = self.rng.random() < self.startup_share
        delay = self.rng.uniform(0, self.startup if in_startup else self.work)
        marker = make_marker()
        started = time.monotonic()
        pid, log = cli.start(*argv, extra_env=extra_env)
        if not in_startup:
            deadline = started + 60
            while not marker() and time.monotonic() < deadline and _alive(pid):
                time.sleep(0.005)
        marked = time.monotonic()
        time.sleep(delay)
        at = time.monotonic() - started
        killed = True
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            # Not yet its own group leader (killed in its first microseconds): the child.
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                killed = False
        code = cli.wait(pid)
        if code != -signal.SIGKILL:
            killed = False  # it had already exited (a zombie still has its group)
        if not killed and not in_startup:
            # The run finished before its moment: the work phase is shorter now than when
            # calibrated (load changes), so later moments are drawn from what was seen.
            self.work = max(0.05, min(self.work, (time.monotonic() - marked) * 0.8))
        phase = "start-up" if in_startup else "work"
        print(f"  kill in {phase} at {at:.2f} s: {'killed' if killed else f'ended {code}'}")
        return KillOutcome(killed, code, at, log.read_text(errors="replace"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def calibrate(
    cli: ForkingCli, argv: tuple[str, ...], make_marker: Callable[[], Callable[[], bool]]
) -> tuple[float, float, str]:
    """One whole run: seconds until the work marker appears, seconds of work after it.

    Measured on the second of two whole runs: a worker's first child still pays for
    lazy imports and Prefect's first client set-up.
    """
    code, output = cli.run(*argv)
    assert code == 0, output
    marker = make_marker()
    started = time.monotonic()
    pid, log = cli.start(*argv)
    seen = None
    while _alive(pid):
        if seen is None and marker():
            seen = time.monotonic()
        time.sleep(0.005)
    code = cli.wait(pid)
    ended = time.monotonic()
    output = log.read_text(errors="replace")
    assert code == 0, output
    assert seen is not None, f"work marker never appeared for {argv}"
    return seen - started, ended - seen, output


def new_entry(folder: Path, predicate: Callable[[str], bool]) -> Callable[[], bool]:
    """A marker: an entry matching `predicate` that was not in `folder` before the run."""
    before = set(os.listdir(folder)) if folder.exists() else set()

    def seen() -> bool:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return False
        return any(predicate(n) and n not in before for n in names)

    return seen
