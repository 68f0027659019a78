"""Dagster definitions of the aggregates, checks, cold tier and their sensors (orchestration/definitions.py)."""

import warnings

from dagster import PreviewWarning

# The asset checks are partitioned (AssetCheckSpec partitions_def), a Dagster preview feature used knowingly:
# its PreviewWarning on every load of the code location, in every Dagster process, is noise in their logs.
warnings.filterwarnings("ignore", category=PreviewWarning)
