"""The retention tiers as data (`tiers`), turned into scheduled Prefect deployments.

- `deployments.tiers`: SPEC.md's schedule table, the one place it is written down.
- `deployments.build`: the table as Prefect deployments (cron in BACKUP_TIMEZONE).
- `deployments.serve`: `chatbot-backup serve`, with missed runs reduced to one catch-up.
- `deployments.timetable`: `chatbot-backup schedule`, next run times without a server.
- `deployments.render_prefect_yaml`: `prefect.yaml` for `prefect deploy --all`, generated.
"""

from deployments.build import BuiltDeployments, build_deployments, check_timezone
from deployments.tiers import DEPLOYMENT_NAMES, TIER_TABLE, Tier, tier_by_name

__all__ = [
    "DEPLOYMENT_NAMES",
    "TIER_TABLE",
    "BuiltDeployments",
    "Tier",
    "build_deployments",
    "check_timezone",
    "tier_by_name",
]
