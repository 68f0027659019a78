"""The pipeline domain: the health page's queries (`ingestionHealth`, `deadLetterSamples`, `dayBuilds`)."""

from api.graphql.pipeline.queries import IngestionHealthQuery, PipelineQuery

__all__ = ["IngestionHealthQuery", "PipelineQuery"]
