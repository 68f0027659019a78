"""The metrics domain: custom metric definitions (`metricDefinitions`, `createMetric`, `updateMetric`,
`deleteMetric`) and their series (`metricSeries`); `load_metric` is the tenant check alert rules reuse."""

from api.graphql.metrics.mutations import MetricMutation
from api.graphql.metrics.queries import MetricQuery, load_metric

__all__ = ["MetricMutation", "MetricQuery", "load_metric"]
