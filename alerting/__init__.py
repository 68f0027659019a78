"""Alert evaluation and delivery (`python -m dashboards.alerts`)."""
