"""Turn the tier table into Prefect deployments: cron in BACKUP_TIMEZONE, one run at a time.

Flows are imported lazily, by name, one tier at a time: a tier whose flow cannot be
imported is reported (with the reason) instead of taking every other tier down with it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from deployments.tiers import (
    ALL_DEPLOYMENTS,
    COLLISION_STRATEGY,
    CONCURRENCY_LIMIT,
    Tier,
)
from tasks.core.errors import ConfigError

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.flows import Flow


@dataclass
class BuiltDeployments:
    """The deployments that could be built, and why the others could not."""

    deployments: list[RunnerDeployment] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # full name -> reason


def check_timezone(name: str) -> str:
    """An IANA timezone name that this machine knows, or ConfigError naming the variable."""
    name = (name or "").strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"BACKUP_TIMEZONE: unknown timezone {name!r}; use an IANA name such as "
            "UTC or Europe/Berlin"
        ) from None
    return name


def load_flow(tier: Tier) -> Flow[Any, Any]:
    """The flow object of a tier, imported now; ConfigError says why it is not there."""
    from prefect.flows import Flow

    try:
        module = importlib.import_module(tier.module)
    except Exception as exc:  # a missing or broken module must not take the others down
        raise ConfigError(
            f"{tier.full_name}: flow module {tier.module} cannot be imported "
            f"({type(exc).__name__}: {exc})"
        ) from None
    flow = getattr(module, tier.function, None)
    if not isinstance(flow, Flow):
        raise ConfigError(f"{tier.full_name}: {tier.entrypoint} is not a Prefect flow")
    if flow.name != tier.flow:
        raise ConfigError(
            f"{tier.full_name}: {tier.entrypoint} is the flow {flow.name!r}, not {tier.flow!r}"
        )
    return flow


def to_deployment(tier: Tier, timezone: str) -> RunnerDeployment:
    """One tier as a runner deployment (served by `chatbot-backup serve`)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    flow = load_flow(tier)
    # `to_deployment` is sync here; its async-dispatch signature only says "or awaitable".
    return cast(
        "RunnerDeployment",
        flow.to_deployment(
            name=tier.deployment,
            schedules=[Cron(tier.cron, timezone=timezone)] if tier.cron else [],
            parameters=tier.parameters,
            concurrency_limit=ConcurrencyLimitConfig(
                limit=CONCURRENCY_LIMIT,
                collision_strategy=ConcurrencyLimitStrategy(COLLISION_STRATEGY),
            ),
            description=tier.description,
            tags=tier.tags,
            # A module path works wherever the package is installed, whatever the cwd;
            # prefect.yaml uses the same entrypoints.
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    )


def build_deployments(timezone: str, tiers: tuple[Tier, ...] = ALL_DEPLOYMENTS) -> BuiltDeployments:
    """Every tier that can be built; the rest listed in `unavailable` with the reason."""
    timezone = check_timezone(timezone)
    built = BuiltDeployments()
    for tier in tiers:
        try:
            built.deployments.append(to_deployment(tier, timezone))
        except ConfigError as exc:
            built.unavailable[tier.full_name] = str(exc)
    return built
