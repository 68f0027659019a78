"""The one place a DSN becomes a connection or a pool."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict


def sqlalchemy_url(url: str) -> str:
    """SQLAlchemy wants an explicit driver; the rest of the code uses plain libpq URLs."""
    scheme, rest = url.split("://", 1)
    if "+" in scheme:
        return url
    return f"postgresql+psycopg://{rest}"


def libpq_url(url: str) -> str:
    """Strip a SQLAlchemy driver suffix (postgresql+psycopg2://) so libpq accepts the URL."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0]))


def with_database(url: str, dbname: str) -> str:
    """Same server and credentials, another database (used to create databases and in tests)."""
    parts = urlsplit(libpq_url(url))
    return urlunsplit(parts._replace(path="/" + dbname))


def database_name(url: str) -> str:
    return conninfo_to_dict(libpq_url(url)).get("dbname", "")


def connect(url: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), **kwargs)


def ping(conn: psycopg.Connection) -> None:
    """A round trip: raises when the server does not answer (readiness checks)."""
    conn.execute("SELECT 1")


def set_local_statement_timeout(conn: psycopg.Connection, statement_timeout_ms: int) -> None:
    """Bound every statement of the current transaction only: pooled connections keep no setting."""
    conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(statement_timeout_ms),))


def ensure_database(url: str) -> bool:
    """Create the target database if the server lacks it; returns True when it was created."""
    name = database_name(url)
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        return True
