"""The tiny-database yardstick of issue 8: one @task in one @flow, run as its own process.

bench/db_backup.py runs this exactly like `chatbot-backup db-backup` (same Python, same
Prefect API and PREFECT_HOME), so the ratio shows what our job adds over Prefect's own
fixed cost of a flow run with one task.
"""

from prefect import flow, task


@task
def one_task() -> int:
    return 1


@flow
def one_task_flow() -> int:
    return one_task()


if __name__ == "__main__":
    one_task_flow()
