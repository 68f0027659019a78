"""What `pulseops up/down/status/logs` share: the state dir's files, the one-system lock, supervisord's RPC,
and the terminal feed (state changes, warnings and errors; everything else stays in the per-service files).

Files under the state dir while a system runs:
  up.lock            flock held by `pulseops up` and the supervisord it starts (fd inherited): one system per
                     state dir, and the lock lives exactly as long as the services
  up.json            who holds it: pids, ports, the database and broker the services use
  supervisord.conf   the process table (mode 0600: it holds the RPC password and the services' environment)
  supervisord.log    supervisord's own log: spawns, exits, restarts (the terminal's state-change lines)
  logs/<name>.log    each service's stdout and stderr
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import json
import os
import re
import select
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

LOCK = "up.lock"
INFO = "up.json"
CONF = "supervisord.conf"
SUPERVISORD_LOG = "supervisord.log"
LOGS = "logs"


# -- one system per state dir ----------------------------------------------------------------------------
def acquire_lock(state: Path) -> int | None:
    """An fd holding an exclusive flock on <state>/up.lock, or None if another `pulseops up` holds it."""
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def running(state: Path) -> bool:
    """True while a `pulseops up` (or the supervisord it started) holds the state dir's lock."""
    if not (state / LOCK).exists():
        return False
    fd = acquire_lock(state)
    if fd is None:
        return True
    os.close(fd)
    return False


def write_info(state: Path, info: dict) -> None:
    tmp = state / (INFO + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, default=str))
    tmp.replace(state / INFO)


def read_info(state: Path) -> dict:
    try:
        return json.loads((state / INFO).read_text())
    except (OSError, ValueError):
        return {}


def port_holders(ports: dict[str, int]) -> list[str]:
    """'<what> port N: pid P (cmdline)' for each port something listens on (any address)."""
    import psutil

    wanted = {p: what for what, p in ports.items() if p > 0}
    out = []
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # not root on macOS: fall back to "busy, holder unknown"
        conns = []
    seen: set[int] = set()
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in wanted and c.laddr.port not in seen:
            seen.add(c.laddr.port)
            out.append(f"{wanted[c.laddr.port]} port {c.laddr.port}: {describe_pid(c.pid)}")
    from pulseops.services import port_open

    for port, what in wanted.items():
        if port not in seen and port_open("127.0.0.1", port, timeout=0.2):
            out.append(f"{what} port {port}: busy (holder not visible to this user)")
    return out


def describe_pid(pid: int | None) -> str:
    import psutil

    if pid is None:
        return "pid unknown"
    try:
        cmd = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return f"pid {pid}"
    return f"pid {pid} ({cmd[:120]})"


def holder_message(state: Path) -> str:
    """Why a second `pulseops up` refuses to start: the holder's pids and which process holds which port."""
    info = read_info(state)
    lines = [f"pulseops up is already running with state dir {state}:"]
    if info:
        lines.append(
            f"  pulseops up pid {info.get('pid')}, supervisord pid {info.get('supervisord_pid')}, "
            f"started {info.get('started_at')}{' (detached)' if info.get('detached') else ''}"
        )
        lines += [f"  {h}" for h in port_holders(info.get("ports", {}))]
    lines.append("Stop it with Ctrl-C in its terminal or `pulseops down`; `pulseops status` shows it.")
    return "\n".join(lines)


# -- supervisord -------------------------------------------------------------------------------------------
def rpc(state: Path) -> xmlrpc.client.ServerProxy:
    """supervisord's XML-RPC interface over its Unix socket, with the password of the running conf."""
    from supervisor.xmlrpc import SupervisorTransport

    conf = configparser.RawConfigParser()
    conf.read(state / CONF)
    ctl = conf["supervisorctl"]
    transport = SupervisorTransport(ctl["username"], ctl["password"], ctl["serverurl"])
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


@dataclass(frozen=True)
class Service:
    name: str
    up: bool
    state: str
    pid: int
    uptime_s: float
    restarts: int
    description: str


def services(state: Path) -> list[Service]:
    """Every supervised process and its state; [] when supervisord does not answer."""
    try:
        infos = rpc(state).supervisor.getAllProcessInfo()
    except (OSError, KeyError, xmlrpc.client.Error):
        return []
    counts = restarts(state)
    out = []
    for i in infos:
        up = i["statename"] == "RUNNING"
        out.append(
            Service(
                name=i["name"],
                up=up,
                state=i["statename"],
                pid=i["pid"],
                uptime_s=max(0.0, i["now"] - i["start"]) if up else 0.0,
                restarts=counts.get(i["name"], 0),
                description=i["description"],
            )
        )
    return out


_STARTED = re.compile(r"supervisord started with pid")
_SPAWNED = re.compile(r"spawned: '([^']+)' with pid")


def restarts(state: Path) -> dict[str, int]:
    """Spawns per process since supervisord last started, minus the first (from supervisord.log)."""
    try:
        text = (state / SUPERVISORD_LOG).read_text(errors="replace")
    except OSError:
        return {}
    start = 0
    for m in _STARTED.finditer(text):
        start = m.end()
    spawns: dict[str, int] = {}
    for m in _SPAWNED.finditer(text, start):
        spawns[m.group(1)] = spawns.get(m.group(1), 0) + 1
    return {k: v - 1 for k, v in spawns.items()}


# -- logs --------------------------------------------------------------------------------------------------
def log_files(state: Path, service: str | None = None) -> dict[str, Path]:
    """name -> file; `service` matches a name or a program of several processes (streams -> streams-0, ...)."""
    files = {p.stem: p for p in sorted((state / LOGS).glob("*.log"))}
    if (state / SUPERVISORD_LOG).exists():
        files["supervisord"] = state / SUPERVISORD_LOG
    if service is None:
        return files
    return {k: v for k, v in files.items() if k == service or re.fullmatch(re.escape(service) + r"-\d+", k)}


class Tail:
    """Follows one file from `offset` (its end by default): new complete lines, across truncation and rotation."""

    def __init__(self, path: Path, from_start: bool = False) -> None:
        self.path = path
        self._ino: int | None = None
        self._pos = 0
        self._partial = b""
        with contextlib.suppress(OSError):
            st = path.stat()
            self._ino, self._pos = st.st_ino, 0 if from_start else st.st_size

    def lines(self) -> list[str]:
        try:
            st = self.path.stat()
        except OSError:
            return []
        if st.st_ino != self._ino or st.st_size < self._pos:  # rotated or truncated: the new file from 0
            self._ino, self._pos, self._partial = st.st_ino, 0, b""
        if st.st_size == self._pos:
            return []
        with self.path.open("rb") as f:
            f.seek(self._pos)
            data = f.read(4 * 1024 * 1024)
        self._pos += len(data)
        *done, self._partial = (self._partial + data).split(b"\n")
        return [d.decode("utf-8", "replace").rstrip("\r") for d in done]


_LEVEL = re.compile(r"\b(WARNING|WARN|ERROR|ERRO|CRITICAL|CRIT|FATAL|PANIC)\b")
_JSON_LEVELS = {"WARNING", "ERROR", "CRITICAL"}
# "2026-12-06 07:37:26,780 " (Python logging), "2026-12-06 07:37:26 +0000 - " (Dagster), ISO with T and Z (Tansu)
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?Z?\s*(?:[+-]\d{4}\s*-\s*)?")


class Filter:
    """Keeps what a person must see from one service's output: warnings, errors and the last line of each
    traceback (the exception), at most `burst` lines per `window_s` seconds (the rest are counted)."""

    def __init__(self, name: str, burst: int = 5, window_s: float = 10.0) -> None:
        self.name = name
        self.burst = burst
        self.window_s = window_s
        self._in_traceback = False
        self._window_start = 0.0
        self._shown = 0
        self._dropped = 0

    def feed(self, line: str, now: float | None = None) -> list[str]:
        keep = self._keep(line)
        if keep is None:
            return []
        now = time.monotonic() if now is None else now
        out = []
        if now - self._window_start >= self.window_s:
            if self._dropped:
                out.append(f"... {self._dropped} more warning/error lines (pulseops logs {self.name})")
            self._window_start, self._shown, self._dropped = now, 0, 0
        if self._shown < self.burst:
            self._shown += 1
            out.append(keep)
        else:
            self._dropped += 1
        return out

    def _keep(self, line: str) -> str | None:
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict):
                    if str(rec.get("level", "")).upper() not in _JSON_LEVELS:
                        return None
                    exc = str(rec.get("exc") or "").strip().splitlines()
                    return f"{rec.get('level')} {rec.get('message')}" + (f" [{exc[-1]}]" if exc else "")
        if line.startswith("Traceback (most recent call last)"):
            self._in_traceback = True
            return None
        if self._in_traceback:
            if not line or line[0].isspace() or line.startswith(("During handling", "The above exception")):
                return None
            self._in_traceback = False
            return f"{line}  (traceback: pulseops logs {self.name})"
        if not _LEVEL.search(line):
            return None
        return _STAMP.sub("", line, count=1)  # the terminal line has its own time


_SUPERVISOR_EVENTS = (
    (re.compile(r"success: (\S+) entered RUNNING state"), "{0} running"),
    (re.compile(r"exited: (\S+) \((.*); not expected\)"), "{0} exited ({1}): restarting"),
    (re.compile(r"exited: (\S+) \((.*); expected\)"), "{0} exited ({1})"),
    (re.compile(r"gave up: (\S+) entered FATAL state, (.*)"), "{0} FAILED: {1} (pulseops logs {0})"),
    (re.compile(r"stopped: (\S+) \((.*)\)"), "{0} stopped ({1})"),
    (re.compile(r"spawnerr: (.*)"), "ERROR could not start a service: {0}"),
    (re.compile(r" (CRIT|ERRO|WARN) (.*)"), "supervisord {0} {1}"),
)


def supervisor_event(line: str) -> str | None:
    """One terminal line for a state change in supervisord's log (spawns and stop requests are skipped)."""
    for pattern, text in _SUPERVISOR_EVENTS:
        if m := pattern.search(line):
            return text.format(*m.groups())
    return None


class Console:
    """The terminal of `pulseops up`: timestamped lines from any thread. A closed stdout (the reader of a pipe
    went away, the terminal hung up) calls `on_closed` once, so the system stops instead of running on
    without anyone to see it."""

    def __init__(self, on_closed: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._on_closed = on_closed
        self.closed = False

    def say(self, line: str, stamp: bool = True) -> None:
        text = f"{time.strftime('%H:%M:%S')}  {line}" if stamp else line
        with self._lock:
            if self.closed:
                return
            try:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._closed()

    def _closed(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):  # later writes (and the interpreter's exit flush) go nowhere
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self._on_closed()

    def watch_stdout(self) -> None:
        """Thread body: wait for POLLERR/POLLHUP on stdout (a pipe whose reader closed, a hung-up terminal).
        Asking for no events reports only those: a file or /dev/null never wakes it."""
        try:
            fd = sys.stdout.fileno()
        except (OSError, ValueError):
            return
        poller = select.poll()
        poller.register(fd, 0)
        while not self.closed:
            events = poller.poll(1000)
            if any(ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, ev in events):
                with self._lock:
                    self._closed()
                return

    def follow(
        self, state: Path, names: Iterable[str], stop: threading.Event, interval: float = 0.25
    ) -> None:
        """Thread body: state changes from supervisord.log, warnings and errors from every service's log."""
        sup = Tail(state / SUPERVISORD_LOG)
        tails = {n: (Tail(state / LOGS / f"{n}.log"), Filter(n)) for n in names}
        width = max((len(n) for n in tails), default=10)
        while not stop.is_set():
            for line in sup.lines():
                if (event := supervisor_event(line)) is not None:
                    self.say(event)
            for name, (tail, filt) in tails.items():
                for line in tail.lines():
                    for shown in filt.feed(line):
                        self.say(f"{name:<{width}} | {shown}")
            stop.wait(interval)
