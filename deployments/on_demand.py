"""Deployments without a schedule, started from the UI, the API or an automation.

`test-restore/on-demand` is what the reactive automation (`flows.automations`) runs after
every scheduled backup, on that backup's file. Adding another on-demand deployment is one
row of `ON_DEMAND`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from deployments.tiers import TAGS

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment


@dataclass(frozen=True)
class OnDemand:
    flow: str
    deployment: str
    entrypoint: str
    description: str

    @property
    def full_name(self) -> str:
        return f"{self.flow}/{self.deployment}"


ON_DEMAND: tuple[OnDemand, ...] = (
    OnDemand(
        "test-restore",
        "on-demand",
        "flows.test_restore_flow.test_restore",
        "Prove a backup restorable (default: the newest full backup); run by the "
        "`chatbot-backup: restore proof` automation after every scheduled backup.",
    ),
)

TEST_RESTORE_ON_DEMAND = "test-restore/on-demand"


def build_on_demand() -> list[RunnerDeployment]:
    """The on-demand deployments, ready for `serve` (no schedules)."""
    import importlib

    from prefect.types.entrypoint import EntrypointType

    built = []
    for row in ON_DEMAND:
        module, function = row.entrypoint.rsplit(".", 1)
        flow: Any = getattr(importlib.import_module(module), function)
        built.append(
            cast(
                "RunnerDeployment",
                flow.to_deployment(
                    name=row.deployment,
                    description=row.description,
                    tags=[*TAGS, "on-demand"],
                    entrypoint_type=EntrypointType.MODULE_PATH,
                ),
            )
        )
    return built
