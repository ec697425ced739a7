"""Soak: the adaptation service under bounded mixed load for minutes, on 127.0.0.1.

Prepares a MetaRec home as ``benchmarks/serving.py`` does (ml-100k ingested, materialised, a
small model trained, registered and promoted; ``--home`` keeps it for the next run), or uses a
prepared home (``--home`` with ``--training-set``: its production version is served). Starts one
real service (``bentoml serve``, :class:`~metarec.serving.process.ServiceProcess`) and drives it
with ``--concurrency`` closed-loop clients for ``--minutes``: a seeded mix of ``/recommend``
(known users with or without a support set of 1..20 ratings, new users from a support set alone,
all items or a candidate subset, k from 5 to 50), ``/predict`` (1..50 items) and ``/feedback``
(1..5 observed ratings, some without a rating) from a trusted caller (the feedback token on every
request: the answers are remembered to score feedback, the service's most memory-hungry path),
plus ``--bad-fraction`` of requests that are invalid on purpose (an unknown item, ``k`` = 0: each
must be a 4xx).

Prints ONE JSON object: requests and errors by class (``2xx``/``4xx``/``5xx``/``connection``)
overall and per window (``--window-seconds``, a minute by default), p50/p99 latency per window
per endpoint, the resident memory (RSS) of the service's process tree at the start (ready, before
load), at minute 2 (the end of the second window, after the warm-up and the bounded caches have
had time to fill) and at the end, the growth from minute 2 to the end in %, and ``"pass"``: no
5xx, no connection error, and growth under 10 %.

    python benchmarks/soak.py [--minutes 10] [--concurrency 8] [--data ml-100k.zip]
        [--home KEEP_DIR [--training-set PARQUET]] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "ml-100k.zip"
ENDPOINTS = ("recommend", "predict", "feedback")
CLASSES = ("2xx", "4xx", "5xx", "connection")
MIX = {"recommend": 0.5, "predict": 0.3, "feedback": 0.2}
MAX_GROWTH_PCT = 10.0
POOL = 4000


@dataclass(frozen=True)
class Sent:
    """One request's outcome: seconds since the load began, endpoint, status class, seconds."""

    at: float
    endpoint: str
    status_class: str
    latency: float


def status_class(status: int | None) -> str:
    """``2xx``/``4xx``/``5xx`` of an HTTP status; ``connection`` for no answer (None)."""
    if status is None:
        return "connection"
    if 200 <= status < 300:
        return "2xx"
    return "5xx" if status >= 500 else "4xx"


class Workload:
    """Seeded, varied request bodies built from a training set's users, items and ratings."""

    def __init__(self, frame, *, seed: int = 0) -> None:
        """Index the training set (columns ``user_id``, ``item_id``, ``rating``)."""
        self.rng = random.Random(seed)
        self.items = sorted(int(i) for i in frame["item_id"].unique())
        self.rated = {
            int(u): list(zip(g["item_id"].astype(int), g["rating"].astype(float), strict=True))
            for u, g in frame.groupby("user_id")
        }
        self.users = sorted(self.rated)

    def _support(self, user: int, size: int) -> list[dict]:
        rows = self.rng.sample(self.rated[user], min(size, len(self.rated[user])))
        return [{"item_id": int(i), "rating": float(r)} for i, r in rows]

    def recommend(self) -> dict:
        """A known user (own recent ratings or a support set) or a new user (support only)."""
        user = self.rng.choice(self.users)
        kind = self.rng.random()
        body: dict = {"k": self.rng.choice([5, 10, 20, 50])}
        if kind < 0.3:
            body["user_id"] = user
        elif kind < 0.7:
            body.update(user_id=user, support=self._support(user, self.rng.randint(1, 20)))
        else:
            body["support"] = self._support(user, self.rng.randint(1, 20))
        if self.rng.random() < 0.3:
            body["candidates"] = self.rng.sample(self.items, min(len(self.items), 200))
        return body

    def predict(self) -> dict:
        """A known user's (or a new user's) ratings of 1..50 items."""
        user = self.rng.choice(self.users)
        body: dict = {"item_ids": self.rng.sample(self.items, self.rng.randint(1, 50))}
        if self.rng.random() < 0.8:
            body["user_id"] = user
        if "user_id" not in body or self.rng.random() < 0.5:
            body["support"] = self._support(user, self.rng.randint(1, 10))
        return body

    def feedback(self) -> dict:
        """1..5 observed ratings of known users (a tenth without a rating: an interaction)."""
        events = []
        for _ in range(self.rng.randint(1, 5)):
            user = self.rng.choice(self.users)
            item, rating = self.rng.choice(self.rated[user])
            event = {"user_id": user, "item_id": int(item)}
            if self.rng.random() >= 0.1:
                event["rating"] = float(rating)
            events.append(event)
        return {"events": events}

    def bad(self) -> tuple[str, dict]:
        """An invalid request (the service must answer a 4xx)."""
        if self.rng.random() < 0.5:
            return "recommend", {"user_id": self.users[0], "k": 0}
        return "predict", {"user_id": self.users[0], "item_ids": [2**31 - 1]}

    def pool(self, *, n: int, bad_fraction: float) -> list[tuple[str, bytes]]:
        """``n`` (endpoint, encoded body) pairs in the mix, encoded once (off the clock)."""
        names, weights = list(MIX), list(MIX.values())
        out = []
        for _ in range(n):
            if self.rng.random() < bad_fraction:
                endpoint, body = self.bad()
            else:
                endpoint = self.rng.choices(names, weights)[0]
                body = getattr(self, endpoint)()
            out.append((endpoint, json.dumps(body).encode()))
        return out


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (0 once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total


async def drive(
    url: str,
    pool: Sequence[tuple[str, bytes]],
    *,
    concurrency: int,
    duration: float,
    headers: dict[str, str],
    timeout: float = 30.0,
) -> list[Sent]:
    """Closed-loop load: ``concurrency`` callers, each with one request in flight, for
    ``duration`` seconds; every request's outcome (a refused or dropped connection, a timeout:
    ``connection``)."""
    import aiohttp

    sent: list[Sent] = []
    began = time.perf_counter()
    stop = began + duration
    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    headers = {"content-type": "application/json", **headers}
    async with aiohttp.ClientSession(url, connector=connector, timeout=client_timeout) as http:

        async def caller(worker: int) -> None:
            n = worker
            while time.perf_counter() < stop:
                endpoint, data = pool[n % len(pool)]
                n += concurrency
                start = time.perf_counter()
                status: int | None = None
                try:
                    async with http.post(f"/{endpoint}", data=data, headers=headers) as answer:
                        await answer.read()
                        status = answer.status
                except (aiohttp.ClientError, TimeoutError, OSError):
                    await asyncio.sleep(0.05)  # a refused connection fails at once: no spin
                end = time.perf_counter()
                sent.append(Sent(start - began, endpoint, status_class(status), end - start))

        await asyncio.gather(*(caller(w) for w in range(concurrency)))
    return sent


async def sample_rss(pid: int, *, every: float, samples: list[tuple[float, int]]) -> None:
    """Append ``(seconds since start, tree RSS)`` every ``every`` seconds until cancelled."""
    began = time.perf_counter()
    while True:
        await asyncio.sleep(every)
        samples.append((time.perf_counter() - began, tree_rss_bytes(pid)))


async def soak(url: str, pool, *, pid: int, args: argparse.Namespace, headers) -> dict:
    """Drive the load while sampling the service's memory at every window's end."""
    samples: list[tuple[float, int]] = [(0.0, tree_rss_bytes(pid))]
    sampler = asyncio.create_task(sample_rss(pid, every=args.window_seconds, samples=samples))
    try:
        sent = await drive(
            url, pool, concurrency=args.concurrency, duration=args.minutes * 60, headers=headers
        )
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    samples.append((args.minutes * 60, tree_rss_bytes(pid)))
    return report(sent, samples, args=args)


def _counts(sent: Sequence[Sent]) -> dict:
    counts = dict.fromkeys(CLASSES, 0)
    for one in sent:
        counts[one.status_class] += 1
    return {"requests": len(sent), **counts}


def _latency(sent: Sequence[Sent]) -> dict:
    """p50/p99 (ms) of the answered requests of each endpoint (None: no answer)."""
    out = {}
    for endpoint in ENDPOINTS:
        ms = np.array(
            [s.latency for s in sent if s.endpoint == endpoint and s.status_class != "connection"]
        )
        out[endpoint] = {
            "requests": len(ms),
            "p50_ms": round(float(np.percentile(ms * 1e3, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms * 1e3, 99)), 2) if len(ms) else None,
        }
    return out


def _rss_at(samples: Sequence[tuple[float, int]], at: float) -> int | None:
    """The first memory sample taken at ``at`` seconds or later (None: the run ended before)."""
    return next((rss for t, rss in samples if t >= at - 1e-6), None)


def report(
    sent: Sequence[Sent], samples: Sequence[tuple[float, int]], *, args: argparse.Namespace
) -> dict:
    """The JSON report of a soak: counts, per-window figures, memory and the verdict."""
    window = args.window_seconds
    n_windows = max(1, int(np.ceil(args.minutes * 60 / window - 1e-9)))
    per_window = []
    for w in range(n_windows):
        inside = [s for s in sent if w * window <= s.at < (w + 1) * window]
        rss = _rss_at(samples, (w + 1) * window)
        per_window.append(
            {"window": w + 1, **_counts(inside), "latency": _latency(inside), "rss_mb": _mb(rss)}
        )
    start, minute_2, end = samples[0][1], _rss_at(samples, 2 * window), samples[-1][1]
    growth = (end - minute_2) / minute_2 * 100 if minute_2 else None
    overall = _counts(sent)
    return {
        "minutes": args.minutes,
        "window_seconds": window,
        "concurrency": args.concurrency,
        "mix": MIX,
        "bad_fraction": args.bad_fraction,
        **overall,
        "by_endpoint": {e: _counts([s for s in sent if s.endpoint == e]) for e in ENDPOINTS},
        "latency": _latency(sent),
        "per_window": per_window,
        "rss_mb": {"start": _mb(start), "minute_2": _mb(minute_2), "end": _mb(end)},
        "rss_growth_minute_2_to_end_pct": None if growth is None else round(growth, 2),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "pass": overall["5xx"] == 0
        and overall["connection"] == 0
        and growth is not None
        and growth < MAX_GROWTH_PCT,
    }


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def prepared(args: argparse.Namespace, home: Path):
    """``(settings, production version, training frame)`` of the home to serve."""
    from metarec.config import load_settings
    from metarec.environment import apply_process_environment
    from metarec.features.training_set import load_training_set
    from metarec.registry.service import Registry

    if args.training_set is None:  # the serving benchmark's home (kept one reused)
        from serving import prepare  # benchmarks/ is on sys.path when run as a script

        settings, info, frame = prepare(args.data, home)
        return settings, info, frame
    settings = load_settings(home=home, registry={"export_bentoml": False})
    apply_process_environment(settings)
    with Registry.open(settings) as registry:
        info = registry.production(settings.registry.model_name)
    if info is None:
        raise SystemExit(f"error: {home} has no production version to serve")
    return settings, info, load_training_set(args.training_set)[0]


def run_soak(args: argparse.Namespace, home: Path, logs: Path) -> dict:
    """Prepare, start the service, drive it, stop it; the report."""
    import uvloop
    from metarec.serving.process import ServiceProcess

    settings, info, frame = prepared(args, home)
    pool = Workload(frame, seed=args.seed).pool(n=POOL, bad_fraction=args.bad_fraction)
    process = ServiceProcess(
        settings,
        version=info.tag,
        log_path=logs / "service.log",
        extra_env={"METAREC_SERVING__TORCH_THREADS": "1"},
    )
    with process, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert process.process is not None
        result = runner.run(
            soak(
                process.url,
                pool,
                pid=process.process.pid,
                args=args,
                headers=process.feedback_headers,
            )
        )
    return {"model_version": info.tag, "items": len(set(frame["item_id"])), **result}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Prints one JSON object; exits 1 when it does not pass.",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="Load duration (default 10).")
    parser.add_argument("--concurrency", type=int, default=8, help="Concurrent clients.")
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=60.0,
        help="Length of a reporting window (default a minute; 'minute 2' is the end of the "
        "second window).",
    )
    parser.add_argument(
        "--bad-fraction",
        type=float,
        default=0.02,
        help="Share of deliberately invalid requests (each must get a 4xx).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the request mix.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ml-100k zip or folder.")
    parser.add_argument(
        "--home", type=Path, default=None, help="Keep the prepared home here (reused if present)."
    )
    parser.add_argument(
        "--training-set",
        type=Path,
        default=None,
        help="With --home: a prepared home; serve its production version and build requests "
        "from this training set (no ml-100k preparation).",
    )
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak and print its JSON; 0 when it passes."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="metarec-bench-soak-") as tmp:
        home = args.home or Path(tmp) / "home"
        result = run_soak(args, home, Path(tmp))
    text = json.dumps(result)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
