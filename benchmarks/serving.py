"""Adaptation service throughput and latency on MovieLens-100K, against a no-batching baseline.

In a temporary MetaRec home: ingest ml-100k → Feast apply + materialise → point-in-time
training set → (validation recorded) → a small model trained quickly, registered and promoted.
Then two real services (``bentoml serve``) run side by side: the service (micro-batched
adaptation) and a baseline that adapts each request alone (``max_batch_size = 1``) on its own
copy of the model. Each is warmed up, then they are driven in alternating windows (service,
baseline, baseline, service, ...) by concurrent closed-loop clients with ``POST /recommend``
requests (user id + a 10-rating support set, all 1,682 items as candidates, k = 10), so that a
slow or fast spell of a shared machine falls on both. Ends by printing one JSON object:
``service`` and ``baseline`` with ``rps``, ``p50_ms``, ``p99_ms`` (over all their windows; the
targets are checked on these), ``window_rps`` and ``window_p99_ms``, and ``speedup``: the
median over rounds of the throughput ratio of the two windows of a round (``speedup_overall``:
total throughput ratio).

    python benchmarks/serving.py [--data ../shared/datasets/ml-100k.zip] [--clients 16]
        [--duration 20] [--rounds 5] [--home KEEP_DIR] [--with-bentoml-path]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "ml-100k.zip"
TARGET_P99_MS = 30.0
TARGET_SPEEDUP = 3.0
SUPPORT = 10
K = 10
MODEL_CONFIG = {
    "embedding_dim": 8,
    "hidden": [16, 16],
    "max_steps": 30,
    "global_epochs": 1,
    "inner_steps": 3,
    "inner_lr": 0.02,
    "min_users_per_value": 20,
    # The served ranker and the factor fold-in are trained briefly: the benchmark measures
    # serving cost, which does not depend on how long they were trained.
    "ranker_max_steps": 200,
    "ranker_eval_every": 100,
    "factor_max_steps": 50,
}


def prepare(data: Path, home: Path):
    """Ingest, materialise, build and validate the training set, train and register a model."""
    from metarec.config import load_settings
    from metarec.data.ingest import DataSource, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.environment import apply_process_environment
    from metarec.features.store import apply_features, materialize_features
    from metarec.features.training_set import build_training_set, load_training_set
    from metarec.testing.serving import mark_validated, train_and_register

    settings = load_settings(home=home, registry={"export_bentoml": False})
    apply_process_environment(settings)
    validated = home / "validated" / "ml-100k.parquet"
    if validated.is_file():  # a kept home (--home): reuse its data and model
        from metarec.registry.service import Registry

        with Registry.open(settings) as registry:
            info = registry.production(settings.registry.model_name)
        if info is not None:
            return settings, info, load_training_set(validated)[0]
    dataset = read_source(DataSource.ML_100K, path=data, download_dir=settings.paths.home)
    snapshot = write_snapshot(dataset, SnapshotStore(settings.paths.snapshots))
    apply_features(settings, snapshot)
    materialize_features(settings)
    built = settings.paths.training_sets / "ml-100k.parquet"
    build_training_set(settings, out=built)
    validated = mark_validated(built, validated)
    info = train_and_register(settings, validated, workdir=home / "work", config=MODEL_CONFIG)
    df, _ = load_training_set(validated)
    return settings, info, df


def make_requests(df, *, n: int, seed: int = 0) -> list[dict]:
    """``n`` recommend bodies: a user id and 10 of that user's ratings."""
    rng = random.Random(seed)
    by_user = {u: g for u, g in df.groupby("user_id") if len(g) >= SUPPORT}
    users = sorted(by_user)
    bodies = []
    for _ in range(n):
        user = rng.choice(users)
        rows = by_user[user].sample(SUPPORT, random_state=rng.randrange(1 << 30))
        bodies.append(
            {
                "user_id": int(user),
                "support": [
                    {"item_id": int(i), "rating": float(r)}
                    for i, r in zip(rows["item_id"], rows["rating"], strict=True)
                ],
                "k": K,
            }
        )
    return bodies


def encode(bodies: list[dict]) -> list[bytes]:
    """Request bodies as JSON bytes, encoded once (not on the clients' clock)."""
    return [json.dumps(body).encode() for body in bodies]


async def drive(
    url: str,
    payloads: list[bytes],
    *,
    clients: int,
    duration: float,
    max_requests: int | None = None,
) -> dict:
    """Closed-loop load: ``clients`` concurrent callers for ``duration`` seconds.

    The clients share this machine's CPU with the services, so whatever they spend per request
    is measured as service latency: they use aiohttp (httpx costs ≈2 ms per request here) on
    uvloop, send bodies encoded beforehand, and only check each answer (status 200, k items).

    Args:
        url: Service base URL.
        payloads: JSON bodies, sent round-robin.
        clients: Concurrent callers, each with one request in flight.
        duration: Seconds to run.
        max_requests: Stop after this many requests in all (e.g. each payload once).
    """
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration
    limit = max_requests if max_requests is not None else float("inf")
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:

        async def one(worker: int) -> None:
            nonlocal errors
            n = worker
            while n < limit and time.perf_counter() < stop:
                data = payloads[n % len(payloads)]
                n += clients
                start = time.perf_counter()
                async with http.post("/recommend", data=data, headers=headers) as response:
                    raw = await response.read()
                    status = response.status
                elapsed = time.perf_counter() - start
                if status != 200 or len(json.loads(raw)["items"]) != K:
                    errors += 1
                else:
                    latencies.append(elapsed)

        began = time.perf_counter()
        await asyncio.gather(*(one(w) for w in range(clients)))
        wall = time.perf_counter() - began
    return {"latencies": latencies, "errors": errors, "wall": wall}


def run_load(url: str, payloads: list[bytes], **options) -> dict:
    """:func:`drive` on a fresh uvloop event loop."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(drive(url, payloads, **options))


def summarise(windows: list[dict]) -> dict:
    """Throughput and latency percentiles over all of a service's measured windows."""
    latencies = [x for w in windows for x in w["latencies"]]
    wall = sum(w["wall"] for w in windows)
    values = np.array(latencies) * 1000.0
    return {
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(values, 50)), 2) if len(values) else None,
        "p99_ms": round(float(np.percentile(values, 99)), 2) if len(values) else None,
        "requests": len(latencies),
        "errors": sum(w["errors"] for w in windows),
        "window_rps": [round(len(w["latencies"]) / w["wall"], 1) for w in windows],
        "window_p99_ms": [
            round(float(np.percentile(np.array(w["latencies"]) * 1000.0, 99)), 1)
            for w in windows
            if w["latencies"]
        ],
    }


def window_ratios(a: dict, b: dict) -> list[float]:
    """Throughput ratio ``a / b`` of each round's two windows (rounds where ``b`` answered)."""
    return [x / y for x, y in zip(a["window_rps"], b["window_rps"], strict=True) if y]


def measure(settings, info, bodies, *, services: dict[str, dict], args, logs: Path) -> dict:
    """Start every service, warm each up, then drive them in alternating windows.

    Returns ``{name: [window, ...]}`` with one window per round for each service.
    """
    from metarec.serving.process import ServiceProcess

    window = args.duration / args.rounds
    with contextlib.ExitStack() as stack:
        urls = {}
        for name, extra_env in services.items():
            process = ServiceProcess(
                settings, version=info.tag, extra_env=extra_env, log_path=logs / f"{name}.log"
            )
            urls[name] = stack.enter_context(process).url
        payloads = encode(bodies)
        warm = encode(list({b["user_id"]: b for b in bodies}.values()))  # one body per user
        for url in urls.values():  # every user once (features cached), then full load
            run_load(url, warm, clients=4, duration=120, max_requests=len(warm))
            run_load(url, payloads, clients=args.clients, duration=args.warmup)
        names = list(urls)
        windows: dict[str, list[dict]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                result = run_load(urls[name], payloads, clients=args.clients, duration=window)
                windows[name].append(result)
                rps = len(result["latencies"]) / result["wall"]
                print(f"round {round_ + 1}/{args.rounds} {name}: {rps:.1f} rps", flush=True)
    return windows


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ml-100k zip or folder.")
    parser.add_argument("--clients", type=int, default=16, help="Concurrent clients.")
    parser.add_argument(
        "--duration", type=float, default=20.0, help="Measured seconds per service, in all."
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="Alternating windows per service (duration/rounds s)."
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="Seconds of full load per service before measuring (after one request per user).",
    )
    parser.add_argument(
        "--with-bentoml-path",
        action="store_true",
        help="Also drive the service with serving.direct_endpoints off (the endpoints are "
        "@bentoml.api methods, with all of BentoML's layers), in the same alternation; "
        "reports it as service_bentoml_path.",
    )
    parser.add_argument("--users", type=int, default=300, help="Distinct request bodies.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per service.")
    parser.add_argument(
        "--home", type=Path, default=None, help="Keep the prepared home here (reused if present)."
    )
    return parser.parse_args()


def service_environments(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Each service to start, by name, with its extra environment."""
    threads = {"METAREC_SERVING__TORCH_THREADS": str(args.threads)}
    services = {
        "service": threads,
        "baseline": {
            **threads,
            "METAREC_SERVING__MAX_BATCH_SIZE": "1",
            "METAREC_SERVING__MAX_LATENCY_MS": "0",
        },
    }
    if args.with_bentoml_path:
        services["service_bentoml_path"] = {**threads, "METAREC_SERVING__DIRECT_ENDPOINTS": "false"}
    return services


def build_report(windows: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    """The JSON report: each service's figures, the ratios and whether the targets hold."""
    service, baseline = summarise(windows["service"]), summarise(windows["baseline"])
    ratios = window_ratios(service, baseline)
    speedup = round(statistics.median(ratios), 2) if ratios else None
    overall = round(service["rps"] / baseline["rps"], 2) if baseline["rps"] else None
    extra = {}
    if "service_bentoml_path" in windows:
        through_bentoml = summarise(windows["service_bentoml_path"])
        gains = window_ratios(service, through_bentoml)
        extra = {
            "service_bentoml_path": through_bentoml,
            "direct_path_gain": round(statistics.median(gains), 2) if gains else None,
        }
    return {
        "clients": args.clients,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "items": 1682,
        "support": SUPPORT,
        "k": K,
        "service": service,
        "baseline": baseline,
        "speedup": speedup,
        "speedup_overall": overall,
        "speedup_by_round": [round(r, 2) for r in ratios],
        **extra,
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "targets": {
            "p99_ms_max": TARGET_P99_MS,
            "speedup_min": TARGET_SPEEDUP,
            "p99_met": service["p99_ms"] is not None and service["p99_ms"] <= TARGET_P99_MS,
            "speedup_met": speedup is not None and speedup >= TARGET_SPEEDUP,
        },
    }


def print_summary(report: dict) -> None:
    """A table of the services, the speedup, then the report as one line of JSON."""
    print(f"{'':14}{'rps':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    rows = {"service": report["service"], "baseline": report["baseline"]}
    if "service_bentoml_path" in report:
        rows["bentoml_path"] = report["service_bentoml_path"]
    for name, row in rows.items():
        print(f"{name:14}{row['rps']:>10}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['errors']:>8}")
    print(
        f"speedup {report['speedup']}x (target ≥ {TARGET_SPEEDUP}x); "
        f"p99 target ≤ {TARGET_P99_MS} ms"
    )
    print(json.dumps(report))


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="metarec-bench-serving-") as tmp:
        home = args.home or Path(tmp) / "home"
        began = time.perf_counter()
        settings, info, df = prepare(args.data, home)
        print(f"prepared {info.tag} in {time.perf_counter() - began:.1f} s", flush=True)
        bodies = make_requests(df, n=args.users)
        services = service_environments(args)
        windows = measure(settings, info, bodies, services=services, args=args, logs=Path(tmp))
    print_summary(build_report(windows, args))


if __name__ == "__main__":
    main()
