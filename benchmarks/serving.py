"""Adaptation service throughput and latency on MovieLens-100K, against a no-batching baseline.

In a temporary MetaRec home: ingest ml-100k → Feast apply + materialise → point-in-time
training set → (validation recorded) → a small model trained quickly, registered and promoted.
Then the real service (``bentoml serve``, micro-batched adaptation) is driven by concurrent
clients for a bounded time with ``POST /recommend`` requests (user id + a 10-rating support
set, all 1,682 items as candidates, k = 10); then, in the same run, a baseline service that
adapts each request alone (``max_batch_size = 1``) on its own copy of the model. Ends by printing
one JSON object: ``service`` and ``baseline`` with ``rps``, ``p50_ms``, ``p99_ms``, and
``speedup`` (throughput ratio).

    python benchmarks/serving.py [--data ../shared/datasets/ml-100k.zip] [--clients 16]
        [--duration 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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
}


def prepare(data: Path, home: Path):
    """Ingest, materialise, build and validate the training set, train and register a model."""
    from metarec.config import load_settings
    from metarec.data.ingest import DataSource, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.environment import apply_process_environment
    from metarec.features.store import apply_features, materialize_features
    from metarec.features.training_set import build_training_set, load_training_set
    from metarec.serving.testing import mark_validated, train_and_register

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


async def drive(url: str, bodies: list[dict], *, clients: int, duration: float) -> dict:
    """Closed-loop load: ``clients`` concurrent callers for ``duration`` seconds.

    The clients use aiohttp: on this machine they share the CPU with the service, and httpx's
    per-request cost (≈2 ms here) would be measured as service latency.
    """
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:

        async def one(worker: int) -> None:
            nonlocal errors
            n = worker
            while time.perf_counter() < stop:
                body = bodies[n % len(bodies)]
                n += clients
                start = time.perf_counter()
                async with http.post("/recommend", json=body) as response:
                    payload = await response.json()
                    status = response.status
                elapsed = time.perf_counter() - start
                if status != 200 or len(payload["items"]) != K:
                    errors += 1
                else:
                    latencies.append(elapsed)

        began = time.perf_counter()
        await asyncio.gather(*(one(w) for w in range(clients)))
        wall = time.perf_counter() - began
    values = np.array(latencies) * 1000.0
    return {
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(values, 50)), 2) if len(values) else None,
        "p99_ms": round(float(np.percentile(values, 99)), 2) if len(values) else None,
        "requests": len(latencies),
        "errors": errors,
    }


def measure(settings, info, bodies, *, label: str, extra_env: dict, args, log: Path) -> dict:
    """Start one service, warm it (every user once), drive it, stop it."""
    from metarec.serving.process import ServiceProcess

    with ServiceProcess(settings, version=info.tag, extra_env=extra_env, log_path=log) as proc:
        warm = {b["user_id"]: b for b in bodies}
        asyncio.run(drive(proc.url, list(warm.values()), clients=4, duration=args.warmup))
        result = asyncio.run(drive(proc.url, bodies, clients=args.clients, duration=args.duration))
    print(f"{label}: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ml-100k zip or folder.")
    parser.add_argument("--clients", type=int, default=16, help="Concurrent clients.")
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds per service.")
    parser.add_argument("--warmup", type=float, default=5.0, help="Warm-up seconds.")
    parser.add_argument("--users", type=int, default=300, help="Distinct request bodies.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per service.")
    parser.add_argument(
        "--home", type=Path, default=None, help="Keep the prepared home here (reused if present)."
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="metarec-bench-serving-") as tmp:
        home = args.home or Path(tmp) / "home"
        began = time.perf_counter()
        settings, info, df = prepare(args.data, home)
        print(f"prepared {info.tag} in {time.perf_counter() - began:.1f} s", flush=True)
        bodies = make_requests(df, n=args.users)
        threads = {"METAREC_SERVING__TORCH_THREADS": str(args.threads)}
        service = measure(
            settings,
            info,
            bodies,
            label="service",
            extra_env=threads,
            args=args,
            log=Path(tmp) / "service.log",
        )
        baseline = measure(
            settings,
            info,
            bodies,
            label="baseline",
            extra_env={
                **threads,
                "METAREC_SERVING__MAX_BATCH_SIZE": "1",
                "METAREC_SERVING__MAX_LATENCY_MS": "0",
            },
            args=args,
            log=Path(tmp) / "baseline.log",
        )
    speedup = round(service["rps"] / baseline["rps"], 2) if baseline["rps"] else None
    load = [round(x, 2) for x in os.getloadavg()]
    report = {
        "clients": args.clients,
        "duration_s": args.duration,
        "items": 1682,
        "support": SUPPORT,
        "k": K,
        "service": service,
        "baseline": baseline,
        "speedup": speedup,
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": load,
        "targets": {
            "p99_ms_max": TARGET_P99_MS,
            "speedup_min": TARGET_SPEEDUP,
            "p99_met": service["p99_ms"] is not None and service["p99_ms"] <= TARGET_P99_MS,
            "speedup_met": speedup is not None and speedup >= TARGET_SPEEDUP,
        },
    }
    print(f"{'':10}{'rps':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, row in (("service", service), ("baseline", baseline)):
        print(f"{name:10}{row['rps']:>10}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['errors']:>8}")
    print(f"speedup {speedup}x (target ≥ {TARGET_SPEEDUP}x); p99 target ≤ {TARGET_P99_MS} ms")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
