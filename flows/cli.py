"""The `chatbot-backup` command: parse arguments, call a flow, print, exit.

Nothing here does backup work: each group of commands lives in `flows/commands/`. Errors
become one line on stderr and the error's exit code; `--debug` shows the traceback and
Prefect's own console logs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tasks.stream.allocator import keep_block_memory, share_one_arena

PROG = "chatbot-backup"


def build_parser() -> argparse.ArgumentParser:
    from flows.commands import GROUPS
    from flows.commands.common import OneLineParser

    parser = OneLineParser(
        prog=PROG, description="Backup and restore for the GPT Chatbot platform."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and Prefect's logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        importlib.import_module(f"flows.commands.{group}").add_commands(commands)
    from flows.commands.help_text import describe_commands

    describe_commands(commands.choices)
    return parser


def quiet_prefect_console() -> None:
    """Keep Prefect's console handler from printing tracebacks over our one-line errors.

    Only the console handler is raised; logs still reach the Prefect API and its UI.
    """
    import logging  # not at the top: wal-push/wal-fetch never need it

    from prefect.logging.handlers import PrefectConsoleHandler

    for logger in [
        logging.getLogger(),
        *[logging.getLogger(n) for n in logging.root.manager.loggerDict],
    ]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL + 10)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # PostgreSQL runs wal-push/wal-fetch once per WAL segment and waits for them: they
    # take a fast path that never imports Prefect (flows/wal_cli.py).
    from flows.wal_cli import is_wal_command

    if is_wal_command(words):
        from flows.wal_cli import main as wal_main

        return wal_main(words)
    # glibc's malloc told to keep the streams' 1 MiB blocks (tasks/stream/allocator.py)
    # before anything else allocates: set only when the first stream starts (as in a
    # deployment's run), restore-all of a 2 GB tree still took 853,000 page faults; set
    # here, 38,500-44,000, and 13 % less time.
    keep_block_memory()
    # One arena for every thread, before Prefect starts any: restore-all's peak 158-162
    # -> 145-148 MiB, time the same (tasks/stream/allocator.py).
    share_one_arena()
    parser = build_parser()
    args = parser.parse_args(words)
    prepare: Callable[[argparse.Namespace], None] | None = getattr(args, "prepare", None)
    if prepare is not None:
        prepare(args)
    debug: bool = args.debug or os.environ.get("CHATBOT_BACKUP_DEBUG") == "1"
    run: Callable[[argparse.Namespace], int] = args.run
    # A local run must not try to phone home from a machine that may have no network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect gives its local (ephemeral) server 20 s to start; a busy host at 2 a.m. can
    # need more, and a backup must not fail for that.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    try:
        # Checks a command can make without Prefect come first: they answer at once.
        precheck: Callable[[argparse.Namespace], None] | None = getattr(args, "precheck", None)
        if precheck is not None:
            precheck(args)
        if not getattr(args, "without_prefect", False) and not getattr(args, "no_settings", False):
            # A configuration error answers now (within 2 s), not after Prefect's
            # temporary server has started; the flow loads the settings again.
            check_settings(args.command, debug, getattr(args, "settings_check", None), args)
        if getattr(args, "without_prefect", False):
            return run(args)
        # Prefect configures its logging in prefect.main (not on `import prefect`, which
        # is lazy); it must have run before its console handler can be quieted.
        import prefect.main  # noqa: F401

        if not debug:
            quiet_prefect_console()
        return run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure ends as one line, unless --debug
        if debug:  # the traceback too, but the same exit status (SPEC: --debug never changes it)
            import traceback

            traceback.print_exc(file=sys.stderr)
        print(f"{PROG}: error: {describe(exc)}", file=sys.stderr)
        return exit_code(exc)


# The flow a command runs, where its name differs from the command's (for the alert).
_FLOW_OF = {"monitor": "monitor-backups", "migrate-to-postgres": "migrate-sqlite-to-postgres"}


def check_settings(
    command: str,
    debug: bool = False,
    settings_check: Callable[[argparse.Namespace, Any], None] | None = None,
    args: argparse.Namespace | None = None,
) -> None:
    """Load the settings before Prefect: a ConfigError answers at once, and still sends
    the failure alert the flow's hook would have sent (its own notes stay off the
    terminal unless --debug: the error is the one line there). `settings_check` is the
    command's own check of what it will use (its --tier, the database file, the off-site
    destinations), made with the loaded settings, nothing connected."""
    from tasks.core.errors import ConfigError
    from tasks.core.settings import load_settings

    try:
        settings = load_settings()
        if settings_check is not None and args is not None:
            settings_check(args, settings)
    except ConfigError as exc:
        if command not in ("schedule", "serve"):
            import logging

            from flows.notify import notify_flow_failure

            quiet = logging.NullHandler()
            notes = logging.getLogger("chatbot_backup")
            if not debug:
                notes.addHandler(quiet)
            try:
                notify_flow_failure(
                    _FLOW_OF.get(command, command), f"ConfigError: {exc}", phase="configuration"
                )
            finally:
                notes.removeHandler(quiet)
        raise


def describe(exc: BaseException) -> str:
    from tasks.core.errors import BackupError
    from tasks.core.redact import redact

    text = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
    return redact(" ".join(text.split()))


def exit_code(exc: BaseException) -> int:
    from tasks.core.errors import BackupError

    code: Any = getattr(exc, "exit_code", 1) if isinstance(exc, BackupError) else 1
    return int(code) or 1
