"""The sustained scenario with py-spy on every API worker during both single-event runs: what an API process
spends its CPU on before and after 10 M events. `python -m benchmarks.sustained_profile --size medium
--out DIR` (needs py-spy; run it under `flock /tmp/pulseops-bench.lock`).

Why: benchmarks/sustained.py reports the API's CPU per request before and after (0.168 -> 0.247 ms in
docs/benchmarks/2026-12-07-suite-medium-d.md); this says where it goes. py-spy samples with --nonblocking
(the processes are not paused; stopping them at each sample cut the rate several-fold), at 49 Hz, so the
figures are still those of profiled processes: compare before with after, not with an unprofiled run.
Writes DIR/{before,after}-<pid>.txt (py-spy's collapsed stacks) and prints the share of samples per part of
the request path (`summarize`).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from benchmarks import sustained

# (part, substring of a frame): a sample counts for the innermost frame that matches one of these
PARTS = (
    ("spool: journal writes and markers", "api/ingest/spool.py"),
    ("publisher: produce", "Publisher.publish"),
    ("publisher: delivery thread", "_poll_loop"),
    ("publisher: hot delivery thread", "_poll_hot"),
    ("fdatasync thread pool", "concurrent/futures"),
    ("spool reconciler", "api/ingest/reconcile.py"),
    ("validation and building", "api/ingest/schemas.py"),
    ("ingest service, other", "api/ingest/service.py"),
    ("ASGI fast path", "api/ingest/asgi.py"),
    ("uvicorn: response send", "RequestResponseCycle.send"),
    ("uvicorn: other", "uvicorn/"),
    ("metrics", "prometheus_client"),
    ("event loop itself (C: epoll, socket I/O)", "Runner.run"),
)


def summarize(files: list[Path]) -> list[tuple[str, float]]:
    """Share of samples per part of PARTS ("other" for the rest), largest first."""
    total, parts = 0, collections.Counter()
    for f in files:
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            stack, n = line.rsplit(" ", 1)
            total += int(n)
            part = "other"
            for frame in reversed(stack.split(";")):
                if hit := next((name for name, pat in PARTS if pat in frame), None):
                    part = hit
                    break
            parts[part] += int(n)
    return [(p, n / total) for p, n in parts.most_common()] if total else []


def _record(spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen:
    cmd = [spy, "record", "--nonblocking", "-p", str(pid), "-d", str(int(seconds)), "-r", "49", "-f", "raw"]
    return subprocess.Popen([*cmd, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sustained_profile", description=__doc__)
    parser.add_argument("--size", choices=sorted(sustained.SIZES), default="small")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args.out.mkdir(parents=True, exist_ok=True)
    single, runs = sustained._single, iter(("before", "after"))

    def profiled(url: str, key: str, seconds: float, raw: list[str]) -> dict:
        port = url.rsplit(":", 1)[1]
        masters = [p for p in psutil.process_iter(["cmdline"])
                   if "uvicorn" in (c := " ".join(p.info["cmdline"] or [])) and port in c]  # fmt: skip
        workers = [c.pid for m in masters for c in m.children()]
        tag = next(runs)
        spies = [_record(spy, pid, seconds - 2, args.out / f"{tag}-{pid}.txt") for pid in workers]
        result = single(url, key, seconds, raw)
        for s in spies:
            s.wait()
        return result

    sustained._single = (
        profiled  # the scenario itself is unchanged: only its two single-event runs are wrapped
    )
    code = sustained.main(["--size", args.size, "--no-report"])
    for tag in ("before", "after"):
        print(f"py-spy, API workers, single events {tag}: share of samples")
        for part, share in summarize(sorted(args.out.glob(f"{tag}-*.txt"))):
            print(f"  {100 * share:5.1f} %  {part}")
    return code


if __name__ == "__main__":
    sys.exit(main())
