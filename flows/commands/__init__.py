"""The CLI's command groups: one module per group of jobs, each with `add_commands(commands)`.

A new job's command is a new module here plus its name in `GROUPS`. `flows/cli.py` imports
them only when it builds the parser, so `import flows.cli` stays cheap.
"""

GROUPS = ("backup", "catalog", "restore", "monitor", "offsite", "schedules", "migrate", "pitr")
