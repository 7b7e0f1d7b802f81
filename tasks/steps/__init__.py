"""Prefect @task wrappers, one module per wing."""
