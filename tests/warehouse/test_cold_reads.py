"""The cold tier's DuckDB filters select exactly the rows PostgreSQL's jsonb filters select, on the same rows
(PostgreSQL's table and its verified Parquet export), for every operator and odd values and keys."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
from psycopg import sql

from pulseops.settings import ColdSettings
from tests.utils.events import land_rows
from tests.utils.tenants import make_tenant
from warehouse import cold
from warehouse.reads import cold as cold_reads
from warehouse.reads.exact import cold_reader
from warehouse.reads.filters import FilterOp, PropertyFilter, compile_filters

DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)

# Values of "v" (as JSON text, so PostgreSQL stores exactly these numbers), and odd keys.
ODD = [
    '"5"', '"abc"', '""', '"5.0"', '"true"', "5", "5.0", "5.5", "-0", "0", "-3", "1e-30", "0.000000000000000000000000000001",
    "20", "20.0000000000000001", "19.9999999999999999", "9007199254740993", "9007199254740992",
    "123456789012345678901234567890", "1.5e300", "true", "false", "null", '{"a": 1}', '{"a": {"b": 1, "c": 2}}',
    "[1, 2]", "[5]", '[1, [2, 3]]', '[[1, 2]]', "[]", "{}", '"\\u00e9t\\u00e9"', '"été"',
]  # fmt: skip
KEYS = ["a.b", "x/y", "~t", "", "$", "[0]", "ключ", 'qu"ote', "$.v"]

OPERANDS = [
    "5", 5, 5.0, 5.5, 0, -0.0, 20, 20.000000000000004, 19.999999999999996, 9007199254740993, 9007199254740992,
    1.2345678901234568e29, 1e-30, 1e-31, True, False, "abc", "", "été",
    {"a": 1}, {"a": {"b": 1}}, [1], [5], [[2]], [[1, 2]], [], {},
]  # fmt: skip
NUMBERS = [5, 5.0, 5.5, 0, -0.0, -3, 20, 20.000000000000004, 19.999999999999996, 9007199254740992,
           9007199254740993, 123456789012345678901234567890, 1.2345678901234568e29, 1e-30, 1e-31, 1e300, -1e300]  # fmt: skip


@pytest.fixture
def both_engines(db, database_url, tmp_path):
    t = make_tenant(db)
    rows = []
    for i, v in enumerate([*ODD, None]):
        props = {} if v is None else {"v": orjson.Fragment(v.encode())}
        for j, key in enumerate(KEYS):
            if (i + j) % 3 == 0:
                props[key] = i
        when = DAY + timedelta(minutes=i)
        body = orjson.dumps(props).decode()
        rows.append((t["project_id"], when, uuid.uuid4(), t["org_id"], "e", f"u{i}", when, body))
    land_rows(db, rows)
    settings = ColdSettings(url=str(tmp_path / "cold"))
    cold.export_day(db, database_url, DAY.date(), settings, datasets=(cold.EVENTS,))
    assert cold.verify_day(db, DAY.date(), settings, datasets=(cold.EVENTS,)).ok
    with cold_reads.open_reader(db, t["project_id"], [DAY.date()], settings) as scope:
        yield db, scope.duck, t["project_id"], settings


def _filters() -> list[PropertyFilter]:
    out = []
    for value in OPERANDS:
        out += [PropertyFilter("v", FilterOp.EQ, value), PropertyFilter("v", FilterOp.NEQ, value)]
    for values in [("5", 5, None), (True, [1]), (5.0, "abc", {"a": 1}), (None,), (0, False, "")]:
        out += [
            PropertyFilter("v", FilterOp.IN, values=values),
            PropertyFilter("v", FilterOp.NOT_IN, values=values),
        ]
    for n in NUMBERS:
        out += [PropertyFilter("v", op, n) for op in (FilterOp.GT, FilterOp.GTE, FilterOp.LT, FilterOp.LTE)]
    for key in ["v", "missing", *(k for k in KEYS if k)]:  # an empty key is refused by validation
        out += [PropertyFilter(key, FilterOp.EXISTS), PropertyFilter(key, FilterOp.NOT_EXISTS)]
        out.append(PropertyFilter(key, FilterOp.GTE, 0))
    return out


def test_every_operator_selects_the_same_rows_in_both_engines(both_engines):
    db, duck, project_id, _settings = both_engines
    checked = 0
    for f in _filters():
        condition, params = compile_filters([f])
        pg = {
            r[0]
            for r in db.execute(
                sql.SQL("SELECT distinct_id FROM events e WHERE e.project_id = %(p)s AND {}").format(
                    condition
                ),
                {**params, "p": project_id},
            )
        }
        duck_condition, duck_params = cold_reads.compile_filters([f])
        got = {
            r[0]
            for r in duck.execute(
                f"SELECT distinct_id FROM events WHERE {duck_condition}", duck_params
            ).fetchall()
        }
        assert got == pg, (f, sorted(got ^ pg))
        checked += 1
    # and all filters at once (AND-ed), as queries use them
    several = [
        PropertyFilter("v", FilterOp.EXISTS),
        PropertyFilter("v", FilterOp.NEQ, "abc"),
        PropertyFilter("$", FilterOp.NOT_EXISTS),
    ]
    condition, params = compile_filters(several)
    pg = {
        r[0]
        for r in db.execute(
            sql.SQL("SELECT distinct_id FROM events e WHERE e.project_id = %(p)s AND {}").format(condition),
            {**params, "p": project_id},
        )
    }
    duck_condition, duck_params = cold_reads.compile_filters(several)
    assert {
        r[0]
        for r in duck.execute(
            f"SELECT distinct_id FROM events WHERE {duck_condition}", duck_params
        ).fetchall()
    } == pg
    assert checked > 150


def test_breakdown_values_group_like_jsonb(both_engines):
    """The cold side's value text, cast to jsonb by PostgreSQL, equals the hot side's value."""
    db, duck, project_id, _settings = both_engines
    values, users, _ = cold_reads.breakdown_pairs(duck, "v", "TRUE", [])
    for user, text in zip(users, values, strict=True):
        if user in {"u14", "u15"}:
            continue  # 20.0000000000000001 / 19.9999999999999999: beyond a double, see docs/cold-tier.md
        same = db.execute(
            "SELECT %s::jsonb IS NOT DISTINCT FROM (SELECT properties -> 'v' FROM events "
            "WHERE project_id = %s AND distinct_id = %s)",
            (text, project_id, user),
        ).fetchone()[0]
        assert same, (user, text)


def test_a_cold_read_obeys_the_statement_timeout(both_engines):
    """DuckDB has no statement timeout of its own: the snapshot's interrupts it, reported as PostgreSQL's."""
    db, _duck, project_id, settings = both_engines
    db.execute("SET statement_timeout = 300")
    try:
        started = time.monotonic()
        with (
            pytest.raises(psycopg.errors.QueryCanceled),
            cold_reader(db, project_id, [DAY.date()], settings) as duck,
        ):
            duck.execute("SELECT count(*) FROM range(1000000000000)").fetchall()
        assert time.monotonic() - started < 10
    finally:
        db.execute("RESET statement_timeout")
