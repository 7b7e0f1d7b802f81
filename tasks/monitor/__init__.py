"""Monitoring: the health checks, alert delivery, Prometheus metrics."""
