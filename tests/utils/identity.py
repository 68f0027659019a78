"""Identity data sets: people who browse anonymously for several sessions and are later linked, and a ground
truth of people computed independently of the warehouse (a union-find over the link events of the rows)."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

from tests.utils.truth import Row


@dataclass
class IdentityData:
    rows: list[tuple]  # landing rows (warehouse/landing.py order), links included
    late_links: list[tuple]  # link events held back: they arrive after the aggregates are built
    # the person every id belongs to once every link (late ones included) has landed, by construction
    people: dict[str, str] = field(default_factory=dict)


def _row(project, org, ts: datetime, name: str, who: str, props: dict, rng: random.Random) -> tuple:
    eid = uuid.UUID(int=rng.getrandbits(128), version=4)
    return (project, ts, eid, org, name, who, ts + timedelta(seconds=1), orjson.dumps(props).decode())


def identity_data(
    project_id: uuid.UUID,
    org_id: uuid.UUID,
    end: datetime,
    days: int,
    people: int,
    seed: int,
    prefix: str = "",
) -> IdentityData:
    """`people` persons over the `days` UTC days before `end`, mixed scenarios:

    - identify after several sessions: one anonymous id for 2-5 sessions on different days, then `$identify`
      (with `$set` / `$set_once`), then sessions as the user id;
    - alias: sessions under an old id, then `$create_alias` (distinct_id = new id, alias = old id);
    - two devices: each device browses under its own anonymous id and identifies as the same user; for one
      person in three the second device's `$identify` is a late link (held back in `late_links`);
    - never linked: one anonymous id, no link (counted per id in either mode).
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic data
    data = IdentityData([], [])
    start = end - timedelta(days=days)

    def at(day: int) -> datetime:
        return start + timedelta(days=day, seconds=rng.randrange(86_400))

    def session(who: str, day: int) -> None:
        t = at(day)
        for i in range(rng.randint(1, 4)):
            data.rows.append(
                _row(project_id, org_id, t + timedelta(minutes=i), "page_view", who,
                     {"path": rng.choice(["/", "/pricing", "/docs"]), "plan": rng.choice(["free", "pro"])}, rng)
            )  # fmt: skip

    def identify(user: str, anon: str, day: int, late: bool = False, plan: str | None = None) -> None:
        props: dict = {"$anon_distinct_id": anon}
        t = at(day)
        if plan is not None:
            props["$set"] = {"plan": plan, "email": f"{user}@example.com"}
            props["$set_once"] = {"first_seen_day": day}
        row = _row(project_id, org_id, t, "$identify", user, props, rng)
        (data.late_links if late else data.rows).append(row)

    for k in range(people):
        user = f"{prefix}user-{k}"
        scenario = k % 4
        span = sorted(rng.sample(range(days), 6))
        if scenario == 0:
            anon = f"{prefix}anon-{k}"
            for d in span[:4]:
                session(anon, d)
            identify(user, anon, span[3], plan=rng.choice(["free", "pro"]))
            for d in span[4:]:
                session(user, d)
            data.people.update({anon: user, user: user})
        elif scenario == 1:
            old = f"{prefix}old-{k}"
            for d in span[:3]:
                session(old, d)
            t = at(span[3])
            data.rows.append(_row(project_id, org_id, t, "$create_alias", user, {"alias": old}, rng))
            for d in span[3:]:
                session(user, d)
            data.people.update({old: user, user: user})
        elif scenario == 2:
            phone, laptop = f"{prefix}phone-{k}", f"{prefix}laptop-{k}"
            for d in span[:3]:
                session(phone, d)
                session(laptop, d + 1 if d + 1 < days else d)
            identify(user, phone, span[3], plan="free")
            identify(user, laptop, span[4], late=k % 3 == 2, plan="pro")
            session(user, span[5])
            data.people.update({phone: user, laptop: user, user: user})
        else:
            anon = f"{prefix}visitor-{k}"
            for d in span[:3]:
                session(anon, d)
            data.people[anon] = anon
    return data


def link_pairs(rows: list[tuple]) -> list[tuple[uuid.UUID, str, str]]:
    """(project, id, other id) of every link event among the rows, read from the raw properties."""
    out = []
    for r in rows:
        props = orjson.loads(r[7])
        if r[4] == "$identify" and isinstance(props.get("$anon_distinct_id"), str):
            out.append((r[0], r[5], props["$anon_distinct_id"]))
        elif r[4] == "$create_alias" and isinstance(props.get("alias"), str):
            out.append((r[0], r[5], props["alias"]))
    return out


def people_of(rows: list[tuple]) -> dict[tuple[uuid.UUID, str], tuple[uuid.UUID, str]]:
    """(project, id) -> a representative of its person: a plain union-find, per project."""
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for p, a, b in link_pairs(rows):
        parent[find((p, a))] = find((p, b))
    return {x: find(x) for x in parent}


def as_people(rows: list[Row], links_from: list[tuple]) -> list[Row]:
    """Truth rows whose distinct_id is replaced by its person (from the link events in `links_from`)."""
    people = people_of(links_from)
    out = []
    for r in rows:
        rep = people.get((r.project_id, r.distinct_id))
        who = f"person:{rep[1]}" if rep is not None else r.distinct_id
        out.append(Row(r.project_id, r.ts, r.event_id, r.name, who, r.props))
    return out


def active_people(rows: list[Row], project_id: uuid.UUID, tz: str, start: date, end: date, window: int):
    """Distinct persons per local day over a trailing window, by brute force (every day, every window)."""
    zone = ZoneInfo(tz)
    users: dict[date, set[str]] = defaultdict(set)
    for r in rows:
        if r.project_id == project_id:
            users[r.ts.astimezone(zone).date()].add(r.distinct_id)
    out, day = [], start
    while day <= end:
        seen: set[str] = set()
        for i in range(window):
            seen |= users.get(day - timedelta(days=i), set())
        out.append((day, len(seen)))
        day += timedelta(days=1)
    return out


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)
