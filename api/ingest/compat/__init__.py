"""Drop-in ingest for SDKs that already exist: the PostHog capture protocol and the Segment HTTP Tracking API.

Each protocol module (posthog.py, segment.py) turns its request into IngestEvents and hands them to
common.accept_mapped, which runs the same builder, rate limit, spool, publish and metrics as the native
`/v1/batch` (api/ingest/service.py): an SDK is answered only after the spool and the broker acknowledged.
The settings an SDK needs, and what is not supported, are in docs/sdks.md.
"""
