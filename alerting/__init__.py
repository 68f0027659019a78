"""Alert evaluation and delivery (`python -m alerting`)."""
