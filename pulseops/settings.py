"""One settings object for every process; values come from `PULSEOPS_*` env vars with local defaults.

Nested groups use `__` (e.g. `PULSEOPS_DB__URL`, `PULSEOPS_KAFKA__BOOTSTRAP`), so one `.env`-style block
configures ingest, streams and later services identically.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseModel):
    url: str = Field(
        "postgresql://root@127.0.0.1:5432/pulseops",
        description="libpq URL of the warehouse database; created by `pulseops migrate` if missing.",
    )
    pool_min: int = 1
    pool_max: int = 8
    embedded_dir: str = Field(
        "/var/tmp/pulseops/pgdata",  # noqa: S108 - a fixed, documented state dir
        description="Data dir for the embedded pgserver fallback (keep it out of /root: pgserver chmods parents).",
    )


class KafkaSettings(BaseModel):
    bootstrap: str | None = Field(
        None,
        description="Kafka bootstrap servers. Unset: `pulseops up` and the tests start an embedded Tansu broker.",
    )
    embedded_port: int = 9092
    topic_raw: str = "events-raw"
    topic_dlq: str = "events-dlq"
    partitions: int = 6
    replication_factor: int = Field(1, description="3 on a real cluster; the embedded broker has one node.")
    retention_ms: int = 6 * 3600 * 1000
    retention_bytes: int = 2 * 1024**3
    consumer_group: str = "pulseops-landing"
    session_timeout_ms: int = Field(
        6000,
        description="Landing consumers' group session. Kafka and Redpanda refuse less than 6,000 ms; "
        "`pulseops up` sets 2,000 for the embedded Tansu, which answers a JoinGroup only after half of it.",
    )
    delivery_timeout_ms: int = Field(5000, description="How long ingest waits for broker acks before 503.")
    outage_wait_ms: int = Field(
        2000,
        description="A request that finds the broker unreachable waits up to this long for it to return before "
        "answering 503: the embedded broker's keeper replaces Tansu in about a second (pulseops/broker.py), and "
        "answering each request meanwhile with 503 made hundreds of retries per recycle. 0: answer at once.",
    )
    linger_ms: int = Field(
        1,
        description="librdkafka linger.ms of ingest's producer: every 202 waits for it. A quiet tenant's 10-event "
        "request spent 6.0 of 7.7 ms of its publish path in it at 5 ms (2.0 at 1 ms); under load batches form "
        "anyway while the previous produce request is in flight.",
    )
    partition_window_ms: int = Field(
        20,
        description="Ingest writes all its messages of one window of this many ms to one partition, rotating "
        "(per process, normal and hot projects apart), instead of hashing each message's key: fewer, larger "
        "record batches, which the embedded broker stores and lists per fetch (api/ingest/publisher.py). "
        "0: partition by key (project + distinct_id).",
    )
    hot_partitions: int = Field(
        1,
        description="Partitions of the raw topic reserved for hot projects (ingest.hot_project_events_per_s) when "
        "there is no overflow topic (topic_overflow empty; ignored otherwise); 0: every project hashes over all.",
    )
    topic_overflow: str = Field(
        "events-overflow",
        description="Topic for hot projects' messages (ingest.hot_project_events_per_s), landed by a landing process "
        "of its own (`python -m streams --overflow`, which every `python -m streams` starts beside itself), so a "
        "quiet project's landing never shares a worker with a hot one's: the quiet tenant's p95 freshness beside a "
        "hot one was 1.02-1.13x alone, 1.35-2.87x with one worker "
        "(docs/benchmarks/2026-12-07-hot-landing-process-skew-medium.md). Set, it replaces hot_partitions. "
        "Empty: hot projects go to the raw topic's reserved partitions.",
    )
    overflow_partitions: int = Field(2, description="Partitions of topic_overflow.")
    queue_max_messages: int = 200_000
    compression: str = Field(
        "lz4",
        description="librdkafka compression.type of ingest's producer. The embedded broker's CPU and memory go with "
        "the bytes it stores and serves. Batch ingest in the shipped configuration, alternating runs, CPU per "
        "accepted event with lz4 vs none: Tansu 0.25-0.26 vs 0.84 us and the landing worker 0.70-0.87 vs 1.36 "
        "us at 1,000 events/request, 0.90-1.32 vs 2.13 and 1.17-1.28 vs 1.71 us at 100; the API processes the "
        "same within the noise. 'none' turns it off.",
    )
    dlq_retention_ms: int = Field(
        7 * 24 * 3600 * 1000,
        description="Dead letters are also in PostgreSQL (dead_letters); a week to replay.",
    )
    dlq_retention_bytes: int = 256 * 1024**2
    embedded_recycle_rss_bytes: int = Field(
        512 * 1024**2,
        description="Embedded Tansu keeps every record in memory (no retention, no DeleteRecords): past this "
        "resident size it is restarted once the landing group committed all but "
        "embedded_recycle_max_unlanded_bytes, ingest answering 503 meanwhile if landing lags "
        "(pulseops/broker.py, pulseops/pressure.py). 0: never.",
    )
    embedded_recycle_records: int = Field(
        200_000,
        description="Also recycle past this many stored records: each fetch lists every stored batch, so the "
        "broker's CPU grows with them (pulseops/broker.py). 0: never.",
    )
    embedded_recycle_batches: int = Field(
        0,
        description="Also recycle past about this many stored record batches: Tansu's CPU per produce and fetch "
        "grows with them, whatever their records and bytes (pulseops/broker_batches.py). About what the former "
        "limit of 200,000 records held at ~2,000 single events/s (~7.5 records per batch; 50,000 batches there: "
        "Tansu 47 % of a core on average instead of 25 %); more records per batch at higher rates recycle less "
        "often. 0 (the default, with embedded_recycle_records at 200,000): never, until Tansu's higher CPU "
        "with it at 30,000 is understood (pulseops/broker_batches.py).",
    )
    embedded_recycle_max_unlanded_bytes: int = Field(
        8 * 1024**2,
        description="Unlanded data (records x resident bytes per stored record) a recycle may drop for the spool "
        "to publish again; 0 if the spool is off.",
    )
    embedded_idle_recycle_s: float = Field(
        3.0,
        description="Also recycle, below the limits above, once no record arrived for this long and the landing "
        "group committed everything: a quiet moment costs no waiting request and no re-publication, and the "
        "next traffic meets a broker that lists no old batches per fetch (pulseops/broker_idle.py). 0: never.",
    )
    embedded_idle_recycle_records: int = Field(
        2_000,
        description="An idle recycle needs at least this many stored records, so that a trickle of events with "
        "lulls does not restart the broker after every lull (pulseops/broker_idle.py). 0: never.",
    )
    embedded_check_interval_s: float = 1.0

    @property
    def reserved_hot_partitions(self) -> int:
        """Partitions of the raw topic reserved for hot projects: none once they have an overflow topic."""
        return 0 if self.topic_overflow else self.hot_partitions

    @property
    def overflow_group(self) -> str:
        """The consumer group of the overflow topic's landing processes."""
        return f"{self.consumer_group}-overflow"

    def overflow_view(self) -> KafkaSettings:
        """These settings as the overflow worker sees them: its topic is the raw one, nothing reserved."""
        return self.model_copy(
            update={
                "topic_raw": self.topic_overflow,
                "consumer_group": self.overflow_group,
                "partitions": self.overflow_partitions,
                "topic_overflow": "",
                "hot_partitions": 0,
            }
        )

    @property
    def servers(self) -> str:
        return self.bootstrap or f"127.0.0.1:{self.embedded_port}"


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"
    socket_timeout_s: float = 1.0


class IngestSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    max_batch_events: int = 1000
    max_body_bytes: int = 1024 * 1024
    max_properties_bytes: int = 32 * 1024
    max_properties_depth: int = 8
    skew_tolerance_s: float = Field(
        5.0, description="Clock-skew corrections smaller than this are network latency and are not applied."
    )
    max_future_s: int = Field(24 * 3600, description="Event times further ahead than this are rejected.")
    rate_per_s: float = Field(20_000, description="Default token refill rate per API key (events/s).")
    burst: float = Field(40_000, description="Default bucket size per API key (events).")
    key_cache_ttl_s: float = Field(10.0, description="Revocation takes effect within this many seconds.")
    retry_after_s: int = 1
    hot_project_events_per_s: float = Field(
        5_000,
        description="A project accepting more events per second than this in one API process is hot for 10 s: "
        "its messages go to the overflow topic (kafka.topic_overflow), or without one to the raw topic's reserved "
        "partitions (kafka.hot_partitions). 0: off.",
    )
    fast_path: bool = Field(
        True,
        description="Serve POST /v1/events and /v1/batch by the plain ASGI handler (api/ingest/asgi.py); "
        "false: through FastAPI's routes (same answers, more CPU per request).",
    )


class SpoolSettings(BaseModel):
    """Ingest's durable journal: each request is fsynced to local disk before it is published and kept until
    the landing workers committed it, so a broker that loses its log loses no 202'd event (docs/ingest.md)."""

    enabled: bool = Field(
        True, description="Off: a 202 is only as durable as the broker (fine on a replicated Kafka)."
    )
    dir: str | None = Field(None, description="Journal folder; default <state_dir>/spool/<raw topic>.")
    fsync: bool = Field(True, description="fdatasync before answering (group commit across requests).")
    segment_max_bytes: int = 64 * 1024**2
    segment_max_age_s: float = Field(1.0, description="A segment is sealed this long after its first record.")
    max_bytes: int = Field(
        4 * 1024**3, description="Unlanded data kept at most; beyond it ingest answers 503 (backpressure)."
    )
    reconcile_interval_s: float = Field(1.0, description="How often sealed segments are checked and pruned.")
    max_replays: int = Field(
        5, description="Re-publications of a record before its segment is set aside in <dir>/stuck."
    )


class QuerySettings(BaseModel):
    """The GraphQL read API (`/graphql` on the API processes)."""

    introspection: bool = Field(
        True, description="Schema introspection (tools, codegen); off hides the schema."
    )
    graphiql: bool = Field(
        False,
        description="GraphiQL page at /graphql. Off by default: its assets load from a CDN in the browser.",
    )
    max_depth: int = 8
    max_aliases: int = 20
    max_tokens: int = 2000
    max_range_days: int = Field(
        365, description="Longest date range a query may ask for (at most the aggregates' retention)."
    )
    max_raw_range_days: int = Field(
        92, description="Longest range for questions only raw events answer (property filters, breakdowns)."
    )
    max_buckets: int = 2500
    max_page_size: int = 200
    statement_timeout_ms: int = 5000
    cache_ttl_s: int = 300
    local_cache_entries: int = Field(
        1000,
        description="Answers each API process also keeps in memory (api/graphql/cache.py), skipping the Redis "
        "round trip on repeats; 0: Redis only.",
    )
    version_ttl_s: float = Field(
        1.0, description="Bound, in seconds, on how much staler a cached answer may be than the database."
    )
    rate_per_s: float = Field(50, description="Read requests per second per read key.")
    burst: float = 100
    live_interval_s: float = Field(1.0, description="How often `liveEventCounts` pushes a value.")
    max_subscriptions_per_connection: int = 10


class StreamsSettings(BaseModel):
    workers: int = 1
    batch_max_rows: int = 20_000
    commit_interval_s: float = 0.25
    fetch_wait_ms: int = Field(
        100,
        description="librdkafka fetch.wait.max.ms of the landing worker. The embedded Tansu holds a fetch this long "
        "even when records are there at once, so under live traffic the worker gets a batch about every half "
        "wait, and an early chunk is handed over only with the next batch (tests/streams/test_fetch_cadence.py). "
        "benchmarks/freshness.py medium: 200 ms gave 202 -> added p50 72 ms, added -> handed p50 100 ms; 100 ms "
        "43 / 55 ms. Lower costs an idle broker more CPU: one answered fetch per wait (benchmarks/system_cpu.py).",
    )
    metrics_port: int = 9101
    overflow_metrics_port: int = Field(
        9201,
        description="Metrics port of worker i's overflow lander (kafka.topic_overflow) is this + i; 0: none.",
    )
    db_retry_after_s: float = Field(
        0.5, description="First retry delay after a database error; doubles up to 30 s."
    )
    nice: int = Field(
        0,
        ge=0,
        le=19,
        description="Niceness of the landing workers under `pulseops up` (0: the ingest API's). A niced worker waits "
        "behind the API for the CPU, which shaved a little off a quiet tenant's latency beside a hot one while "
        "the machine had room, but once the API and the hot tenant's accepted load filled both cores landing "
        "fell behind by seconds: the quiet tenant's p95 freshness was 7.2 and 16.0 s at 10, 0.9 and 0.7 s at 0 "
        "(docs/benchmarks/2026-12-07-ab-landing-nice-medium.md). The PostgreSQL backend a worker copies into "
        "is not niced either way.",
    )


class WarehouseSettings(BaseModel):
    raw_retention_days: int = 90
    partitions_ahead_days: int = 7


class ColdSettings(BaseModel):
    enabled: bool = Field(
        True,
        description="Export closed days automatically (cold_export_sensor); retention waits for exports.",
    )
    url: str = Field(
        "/var/tmp/pulseops/cold",  # noqa: S108 - a fixed, documented state dir
        description="Where the cold tier's Parquet files go: a local folder, or s3://bucket/prefix for an "
        "S3-compatible store (credentials from the usual AWS_* environment variables).",
    )
    s3_endpoint: str | None = Field(
        None, description="Endpoint of an S3-compatible store (MinIO, R2, ...), e.g. http://127.0.0.1:9000."
    )
    s3_region: str | None = None
    zstd_level: int = Field(3, description="zstd level of the Parquet files.")
    export_after_days: int = Field(
        1, description="A UTC day is exported once it is this many days old (1: from the next day on)."
    )
    max_days_per_tick: int = Field(10, description="How many stale days the export sensor requests at once.")


class OrchestrationSettings(BaseModel):
    start_date: str = Field("2025-12-01", description="First daily partition (UTC).")
    dagster_home: str | None = Field(
        None, description="Dagster instance folder; default <state_dir>/dagster."
    )
    nice: int = Field(
        0,
        ge=0,
        le=19,
        description="Niceness of Dagster's code server, daemon and webserver (and so of its runs) under "
        "`pulseops up`, for hosts where batch work must yield the CPU to the ingest API. 0 (default): on this "
        "2-core machine kind Dagster took 1.5 % of the machine while ingest ran at its maximum "
        "(docs/benchmarks/2026-12-06-system-cpu-medium-b.md), while a late-data correction under ingest load "
        "waits 2-6 s on starting its run worker, which a niced run would stretch.",
    )
    webserver_host: str = "127.0.0.1"
    webserver_port: int = 3000
    sensor_interval_s: int = Field(5, description="How often the late-data sensor looks for stale days.")
    late_lag_s: int = Field(
        3600, description="An event is late when it arrives this long after its event time."
    )
    late_share_warn: float = Field(0.10, description="Warn when a day's late-arrival share exceeds this.")
    dead_letter_rate_warn: float = Field(
        0.01, description="Warn when a day's dead letters / events exceed this."
    )
    aggregates_retention_days: int = 365
    max_days_per_run: int = Field(
        60, description="The late-data sensor rebuilds at most this many stale days per run (the rest next)."
    )
    close_grace_s: int = Field(
        900,
        description="A UTC day is built once it closed this long ago (late events included); while it is open its "
        "answers come from raw events (warehouse/reads/exact.py), so rebuilding it would be busy work.",
    )
    retry_backoff_s: float = Field(
        30.0, description="A failed or killed rebuild or export is retried after this, doubling per failure."
    )
    retry_max_attempts: int = Field(
        5, description="Runs per day and data before giving up (until new data); shown on /metrics."
    )


class DashboardSettings(BaseModel):
    """The web dashboard (`python -m dashboards`): pages, static files and a same-origin GraphQL relay."""

    host: str = "127.0.0.1"
    port: int = 8050
    api_url: str | None = Field(
        None, description="Where the GraphQL API answers; default http://<ingest host>:<ingest port>."
    )
    dagster_url: str | None = Field(
        None, description="Dagster UI linked from the health page; default the local webserver."
    )
    relay_timeout_s: float = Field(15.0, description="How long the relay waits for the API per request.")


class AlertSettings(BaseModel):
    """The alert evaluator (`python -m alerting`) and its delivery channels."""

    interval_s: float = Field(
        5.0, description="A rule is evaluated again this long after its last evaluation (latency bound)."
    )
    tick_s: float = Field(0.5, description="How often the evaluator looks for due rules.")
    http_timeout_s: float = Field(5.0, description="Per attempt, webhook and Slack deliveries.")
    max_attempts: int = Field(3, description="Delivery attempts per channel and firing (backoff 0.5 s, 1 s).")
    smtp_host: str | None = Field(None, description="SMTP server for e-mail alerts; unset: e-mail fails.")
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_from: str = "pulseops@localhost"
    allow_private_targets: bool = Field(
        False,
        description="Let webhooks reach loopback, private and link-local addresses. Off: any read key could "
        "otherwise make the evaluator probe internal services (cloud metadata, admin ports).",
    )


class LogSettings(BaseModel):
    """How every Python service logs (pulseops/logs.py); under `pulseops up` each to <state_dir>/logs."""

    format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per line (ts, level, service, message, ...) for shippers."
    )
    level: str = Field("INFO", description="Level of the services' own loggers (the files keep this level).")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PULSEOPS_", env_nested_delimiter="__", extra="ignore")

    db: DatabaseSettings = DatabaseSettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    ingest: IngestSettings = IngestSettings()
    spool: SpoolSettings = SpoolSettings()
    query: QuerySettings = QuerySettings()
    streams: StreamsSettings = StreamsSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    orchestration: OrchestrationSettings = OrchestrationSettings()
    cold: ColdSettings = ColdSettings()
    dashboard: DashboardSettings = DashboardSettings()
    alerts: AlertSettings = AlertSettings()
    log: LogSettings = LogSettings()
    state_dir: str = Field(
        "/var/tmp/pulseops",  # noqa: S108 - a fixed, documented state dir
        description="Runtime files: embedded services, logs, the ingest spool.",
    )

    @property
    def spool_dir(self) -> str:
        """One journal per raw topic: its reconciler checks that topic's consumer group."""
        return self.spool.dir or str(Path(self.state_dir) / "spool" / self.kafka.topic_raw)


@lru_cache
def get_settings() -> Settings:
    return Settings()
