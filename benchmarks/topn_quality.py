"""Whole-catalogue top-N quality for new users on MovieLens-100K, every method, user folds.

The training set comes through MetaRec's own path in a METAREC home (a temporary one unless
``--home``), built once: ingest → snapshot → Feast apply → point-in-time historical retrieval →
validation gate (``build_training_set`` of ``ml100k.py``). The users are then cut
into ``--folds`` seeded folds (``plan_split(n_folds=, test_fold=)``) so that every eligible user
is a test user exactly once; per fold and seed, ``metarec.training.trainer.rank_catalogue``
fits the baselines, meta-trains the catalogue ranker and the plain ranker, chooses every
hyper-parameter on validation users and ranks the catalogue for the fold's test users in every
scenario, support order (time, random) and support size K (5, 10, 20).

Prints a table of NDCG@20 (means over folds and seeds), the paired ratios of the served ranker
and the meta-ranker to the strongest EASE variant and to popularity (and meta vs plain ranker)
with 95 % per-user bootstrap intervals (per-user arrays pooled over folds and seeds, users
resampled with replacement, ratio of means), the targets, and last one JSON object:
``{"metrics": {scenario: {order: {K: {method: {metric}}}}}, "ratios", "targets", "seconds",
"folds", "seeds", ...}``.

    python benchmarks/topn_quality.py [--data ../shared/datasets/ml-100k.zip] [--quick]
        [--folds 5] [--seeds 0] [--home DIR] [--with-rating-model]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "ml-100k.zip"
METRICS = ("recall@20", "ndcg@20", "hit@10", "mrr", "coverage", "personalisation", "popularity")
METHODS = (
    "ranker",
    "meta_ranker",
    "plain_ranker",
    "popularity",
    "item_mean",
    "item_knn",
    "ease",
    "ease_weighted",
    "rating_model",
)
EASE_VARIANTS = ("ease", "ease_weighted")
BOOTSTRAP = 1000
BOOTSTRAP_SEED = 20240
QUICK = {"ranker_max_steps": 100}
RANKER_SECONDS_TARGET = 300.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def training_set_in(data: Path, home: Path) -> Path:
    """The validated ml-100k training set of ``home``, built once (reused when present)."""
    path = home / "training_sets" / "ml-100k.parquet"
    if path.exists():
        log(f"reusing the training set {path}")
        return path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ml100k import build_training_set

    log(f"building the training set through Feast in {home} ...")
    return build_training_set(data, home)


def train_rating_model(data, config, device: torch.device, workdir: Path):  # type: ignore[no-untyped-def]
    """Today's rating model (global fit + meta-training), as ``trainer.train`` trains it."""
    from metarec.training.checkpoint import Checkpointing
    from metarec.training.rating_training import train_rating_models

    checkpoints = Checkpointing(workdir, run_key=f"topn-{config.seed}-{config.test_fold}")
    rating = train_rating_models(data, config=config, device=device, checkpoints=checkpoints)
    rating.model.cpu()
    return rating.adapted()


def split_cell(cell: str) -> tuple[str, str]:
    order, k = cell.split("@")
    return order, k


def mean_metrics(tables: list[dict]) -> dict:
    """``{scenario: {order: {K: {method: {metric}}}}}``, means over runs (folds × seeds)."""
    out: dict = {}
    for scenario in tables[0]:
        for cell in tables[0][scenario]:
            order, k = split_cell(cell)
            here = out.setdefault(scenario, {}).setdefault(order, {}).setdefault(k, {})
            for method in tables[0][scenario][cell]:
                values = [t[scenario][cell][method] for t in tables if method in t[scenario][cell]]
                here[method] = {m: float(np.mean([v[m] for v in values])) for m in METRICS}
    return out


def pooled(per_user: list[dict], scenario: str, cell: str, method: str) -> np.ndarray:
    """One method's per-user NDCG@20, concatenated over runs (aligned across methods)."""
    return np.concatenate([np.asarray(p[scenario][cell][method], float) for p in per_user])


def ratio_ci(a: np.ndarray, b: np.ndarray) -> dict:
    """mean(a) / mean(b) with a 95 % paired bootstrap interval over users."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = len(a)
    ratio = float(a.mean() / b.mean()) if b.mean() > 0 else float("nan")
    boots = np.empty(BOOTSTRAP)
    for i in range(BOOTSTRAP):
        idx = rng.integers(0, n, n)
        den = b[idx].mean()
        boots[i] = a[idx].mean() / den if den > 0 else np.nan
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return {"ratio": ratio, "ci95": [float(lo), float(hi)], "users": int(n)}


def strongest(methods: dict, names: tuple[str, ...]) -> str:
    """The method among ``names`` with the highest mean NDCG@20."""
    present = [m for m in names if m in methods]
    return max(present, key=lambda m: methods[m]["ndcg@20"])


def ratios(metrics: dict, per_user: list[dict]) -> dict:
    """Paired NDCG@20 ratios per scenario/order/K with bootstrap CIs."""
    out: dict = {}
    for scenario, orders in metrics.items():
        for order, ks in orders.items():
            for k, methods in ks.items():
                cell = f"{order}@{k}"

                def arr(method: str, scenario=scenario, cell=cell) -> np.ndarray:
                    return pooled(per_user, scenario, cell, method)

                ease = strongest(methods, EASE_VARIANTS)
                here: dict = {"strongest_ease": ease}
                for name in ("ranker", "meta_ranker"):
                    here[f"{name}/ease_best"] = ratio_ci(arr(name), arr(ease))
                    here[f"{name}/popularity"] = ratio_ci(arr(name), arr("popularity"))
                if "plain_ranker" in methods:
                    here["meta_ranker/plain_ranker"] = ratio_ci(
                        arr("meta_ranker"), arr("plain_ranker")
                    )
                best = strongest(methods, ("popularity", *EASE_VARIANTS))
                here["strongest_pop_or_ease"] = best
                here["ranker/pop_or_ease_best"] = ratio_ci(arr("ranker"), arr(best))
                out.setdefault(scenario, {}).setdefault(order, {})[k] = here
    return out


def targets(ratio: dict, seconds: list[float]) -> dict:
    """The issue's new-user targets (met on the point estimate; CI reported)."""
    new = ratio.get("new_user", {})
    checks: dict = {}

    def check(name: str, order: str, k: int, key: str, need: float, goal: float | None = None):  # type: ignore[no-untyped-def]
        r = new.get(order, {}).get(str(k))
        if r is None:
            checks[name] = {"met": None, "reason": "cell not evaluated"}
            return
        entry = {"met": r[key]["ratio"] >= need, "required": need, **r[key]}
        if key.endswith("ease_best"):
            entry["baseline"] = r["strongest_ease"]
        if key.endswith("pop_or_ease_best"):
            entry["baseline"] = r["strongest_pop_or_ease"]
        if goal is not None:
            entry["goal"], entry["goal_met"] = goal, r[key]["ratio"] >= goal
        checks[name] = entry

    check("random@10: ranker >= 1.03x strongest EASE", "random", 10, "ranker/ease_best", 1.03, 1.05)
    check("random@5: ranker >= 1.00x strongest EASE", "random", 5, "ranker/ease_best", 1.00)
    check("random@20: ranker >= 0.97x strongest EASE", "random", 20, "ranker/ease_best", 0.97)
    for k in (5, 10, 20):
        check(
            f"time@{k}: ranker >= max(popularity, strongest EASE)",
            "time",
            k,
            "ranker/pop_or_ease_best",
            1.0,
        )
    check("random@5: ranker >= 1.3x popularity", "random", 5, "ranker/popularity", 1.3)
    for k in (5, 10):
        check(
            f"random@{k}: meta_ranker >= 1.05x plain_ranker",
            "random",
            k,
            "meta_ranker/plain_ranker",
            1.05,
        )
    checks[f"rank_catalogue seconds per fold <= {RANKER_SECONDS_TARGET:.0f}"] = {
        "met": bool(seconds) and max(seconds) <= RANKER_SECONDS_TARGET,
        "max_seconds": max(seconds, default=0.0),
        "mean_seconds": float(np.mean(seconds)) if seconds else 0.0,
        "required": RANKER_SECONDS_TARGET,
        "note": "wall time of rank_catalogue: ranker + plain ranker meta-training, baseline "
        "fitting, validation choices and evaluation of every method (an upper bound on the "
        "ranker's meta-training alone)",
    }
    return checks


def rich_table(title: str, labels: Sequence[str], values: Sequence[str]):  # type: ignore[no-untyped-def]
    """An empty rich table: ``labels`` columns, then right-aligned ``values`` columns."""
    from rich.table import Table

    table = Table(title=title)
    for col in labels:
        table.add_column(col)
    for col in values:
        table.add_column(col, justify="right")
    return table


def cells_of(nested: dict) -> Iterator[tuple[str, str, str, dict]]:
    """``(scenario, order, K, value)`` of a ``{scenario: {order: {K: value}}}`` dict."""
    for scenario, orders in nested.items():
        for order, ks in orders.items():
            for k, value in ks.items():
                yield scenario, order, k, value


def ndcg_table(metrics: dict, title: str):  # type: ignore[no-untyped-def]
    methods = [
        m
        for m in METHODS
        if any(m in ms for o in metrics.values() for c in o.values() for ms in c.values())
    ]
    table = rich_table(title, ("scenario", "order", "K"), methods)
    for scenario, order, k, ms in cells_of(metrics):
        best = max(ms[m]["ndcg@20"] for m in methods if m in ms)
        cells = []
        for m in methods:
            if m not in ms:
                cells.append("-")
                continue
            v = f"{ms[m]['ndcg@20']:.4f}"
            cells.append(f"[bold]{v}[/bold]" if ms[m]["ndcg@20"] == best else v)
        table.add_row(scenario, order, k, *cells)
    return table


def ratio_rich(ratio: dict):  # type: ignore[no-untyped-def]
    keys = (
        "ranker/ease_best",
        "meta_ranker/ease_best",
        "ranker/popularity",
        "meta_ranker/popularity",
        "meta_ranker/plain_ranker",
    )
    table = rich_table(
        "NDCG@20 ratios, pooled users [95% paired bootstrap CI]",
        ("scenario", "order", "K", "EASE"),
        keys,
    )
    for scenario, order, k, r in cells_of(ratio):
        cells = [
            f"{r[key]['ratio']:.3f} [{r[key]['ci95'][0]:.3f},{r[key]['ci95'][1]:.3f}]"
            if key in r
            else "-"
            for key in keys
        ]
        table.add_row(scenario, order, k, r["strongest_ease"], *cells)
    return table


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5, help="User folds (each is test once).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="Training/split seeds.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 1 fold, 100 steps.")
    parser.add_argument("--home", type=Path, default=None, help="METAREC home to (re)use.")
    parser.add_argument(
        "--with-rating-model",
        action="store_true",
        help="Also meta-train today's rating model per fold (~2 min per fold).",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default).")
    parser.add_argument("--set", nargs="*", default=[], help="TrainingConfig overrides key=json.")
    return parser.parse_args()


def config_overrides(args: argparse.Namespace) -> dict:
    """TrainingConfig overrides: ``--quick``'s, then every ``--set key=json``."""
    overrides: dict = dict(QUICK) if args.quick else {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = json.loads(value)
    return overrides


def run_fold(df, args, overrides: dict, *, seed: int, fold: int, workdir: Path) -> dict:  # type: ignore[no-untyped-def]
    """One (seed, fold): prepare, optionally train the rating model, rank the catalogue.

    Returns ``{"table", "per_user", "rank_seconds", "rating_seconds"}``.
    """
    from metarec.training.config import TrainingConfig
    from metarec.training.preparation import config_split, prepare
    from metarec.training.trainer import rank_catalogue, seed_everything

    tag = f"seed{seed}/fold{fold}"
    config = TrainingConfig.build(
        {**overrides, "n_folds": args.folds, "test_fold": fold, "seed": seed, "device": "cpu"}
    )
    seed_everything(seed)
    split = config_split(df, config)
    data = prepare(df, split=split, encoder=None, config=config)
    device = torch.device("cpu")
    rating_model, rating_seconds = None, None
    if args.with_rating_model:
        t0 = time.perf_counter()
        rating_model = train_rating_model(data, config, device, workdir / tag)
        rating_seconds = time.perf_counter() - t0
        log(f"{tag}: rating model {rating_seconds:.0f}s")

    def progress(event) -> None:  # type: ignore[no-untyped-def]
        if event.phase == "ranker" and event.step % 100 == 0:
            log(f"{tag}: ranker step {event.step}/{event.total}")

    keep: dict = {}
    t0 = time.perf_counter()
    run = rank_catalogue(
        data,
        config=config,
        rating_model=rating_model,
        device=device,
        on_progress=progress,
        keep_per_user=keep,
    )
    took = time.perf_counter() - t0
    new = run.table.get("new_user", {})
    log(
        f"{tag}: rank_catalogue {took:.0f}s, {len(split.test_users)} test users, "
        f"blend {run.card['blend_weight']}, new_user random@10 NDCG@20 "
        + ", ".join(f"{m}={v['ndcg@20']:.4f}" for m, v in new.get("random@10", {}).items())
    )
    return {
        "table": run.table,
        "per_user": keep,
        "rank_seconds": took,
        "rating_seconds": rating_seconds,
    }


def print_report(metrics: dict, ratio: dict, checks: dict, *, runs: str, with_rating: bool) -> None:
    """The NDCG@20 table, the ratio table and the target checks (rich, on stdout)."""
    from rich.console import Console

    console = Console(width=250)
    console.print(ndcg_table(metrics, f"ml-100k top-N: NDCG@20, mean over {runs}"))
    console.print(ratio_rich(ratio))
    for name, check in checks.items():
        if isinstance(check, dict):
            mark = {True: "met   ", False: "MISSED", None: "n/a   "}[check["met"]]
            console.print(mark, f"{name}: {check}", markup=False)
        else:
            console.print(check, markup=False)
    if not with_rating:
        console.print("rating_model: not run (--with-rating-model to include it)")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from metarec.features.training_set import load_training_set

    overrides = config_overrides(args)
    folds_run = [0] if args.quick else list(range(args.folds))
    started = time.perf_counter()
    runs: list[dict] = []
    seconds: dict = {"rank_catalogue": {}, "rating_model": {}}
    with tempfile.TemporaryDirectory(prefix="metarec-topn-") as tmp:
        home = args.home.resolve() if args.home else Path(tmp) / "home"
        path = training_set_in(args.data.resolve(), home)
        seconds["prepare"] = time.perf_counter() - started
        df, _ = load_training_set(path)
        for seed in args.seeds:
            for fold in folds_run:
                run = run_fold(df, args, overrides, seed=seed, fold=fold, workdir=Path(tmp))
                tag = f"seed{seed}/fold{fold}"
                seconds["rank_catalogue"][tag] = run["rank_seconds"]
                if run["rating_seconds"] is not None:
                    seconds["rating_model"][tag] = run["rating_seconds"]
                runs.append(run)
    metrics = mean_metrics([r["table"] for r in runs])
    ratio = ratios(metrics, [r["per_user"] for r in runs])
    checks = targets(ratio, list(seconds["rank_catalogue"].values()))
    if not args.with_rating_model:
        checks["note"] = "rating_model was not run (use --with-rating-model; ~2 min per fold)"
    seconds["total"] = time.perf_counter() - started
    described = f"{len(folds_run)} fold(s) of {args.folds}, seeds {args.seeds}"
    print_report(metrics, ratio, checks, runs=described, with_rating=args.with_rating_model)
    result = {
        "benchmark": "topn_quality",
        "data": str(args.data),
        "quick": args.quick,
        "with_rating_model": args.with_rating_model,
        "overrides": overrides,
        "metrics": metrics,
        "ratios": ratio,
        "targets": checks,
        "seconds": seconds,
        "folds": len(folds_run),
        "n_folds": args.folds,
        "seeds": args.seeds,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
