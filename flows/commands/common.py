"""What every command group shares: the one-line parser, argument types, the date refusal."""

from __future__ import annotations

import argparse
from typing import NoReturn

PROG = "chatbot-backup"


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr like every other failure (argparse's exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


def retention_days(value: str) -> int:
    from tasks.core.settings import MAX_RETENTION_DAYS

    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, got {value!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 day, got {days}")
    if days > MAX_RETENTION_DAYS:  # refused before anything is written
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_RETENTION_DAYS} days (100 years), got {days}"
        )
    return days


def count_arg(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 50:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 50, got {value!r}")
    return int(value)


def refuse_impossible_date(given: str) -> None:
    """A backup named with a date that never existed was not made by us: say so first."""
    from tasks.core.errors import VerifyError
    from tasks.core.naming import impossible_timestamp

    name = given.rstrip("/").rsplit("/", 1)[-1]
    stamp = impossible_timestamp(name)
    if stamp is not None:
        raise VerifyError(
            f"{name}: {stamp} is not a real date and time, so no backup run made this file; "
            "if it really is a backup, rename it with its true UTC time"
        )


def no_prefect(args: argparse.Namespace) -> None:
    """A command that runs no flow: main() need not load Prefect for it."""
    args.without_prefect = True
