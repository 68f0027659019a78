"""The alerts domain: threshold rules and their firings (`alertRules`, `alertFirings`, `createAlertRule`,
`updateAlertRule`, `deleteAlertRule`); evaluated by `python -m alerting`, not by the API."""

from api.graphql.alerts.mutations import AlertMutation
from api.graphql.alerts.queries import AlertQuery

__all__ = ["AlertMutation", "AlertQuery"]
