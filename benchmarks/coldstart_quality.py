"""Cold-start quality on MovieLens-100K under the MeLU protocol, every method, paired re-splits.

The training set comes through MetaRec's own path in a temporary METAREC home: ingest →
snapshot → Feast apply → point-in-time historical retrieval → validation gate. Then, per
re-split (split seed = training seed 0..N-1), each MeLU algorithm is meta-trained
(``metarec.training.trainer.train``) and the meta-learned factor fold-in
(``metarec.training.factor_training``) is fitted, and every method is evaluated with every
baseline on the same held-out users and support/query sets of that re-split. Prints a table of
the means over re-splits, the paired ratio of each method's new-user MAE/RMSE to
``user_item_bias`` with a 95 % t-interval over re-splits, the issue's target checks, and ends
with one JSON object: ``metrics``
(``{scenario: {support_size: {method: {"mae", "rmse", "ndcg@1", "ndcg@3", "ndcg@5"}}}}``, means
over re-splits), ``ratios``, ``leakage_check``, ..., and last ``targets``.

    python benchmarks/coldstart_quality.py [--data ../shared/datasets/ml-100k.zip] [--quick]
        [--resplits 10] [--skip-melu] [--algorithms maml fomaml reptile]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from coldstart_targets import BASELINE, legacy_targets, ratios, targets
from ml100k import build_training_set

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "ml-100k.zip"
ALGORITHMS = ("maml", "fomaml", "reptile")
FACTOR = "factor_map"

# Tuned for ml-100k on a 2-core CPU: init from the global model, short meta-training.
CONFIG = {
    "use_item_id": True,
    "embedding_dim": 32,
    "hidden": [64, 64],
    "min_users_per_value": 20,
    "global_epochs": 8,
    "global_lr": 0.003,
    "global_weight_decay": 0.3,
    "max_steps": 150,
    "meta_batch_size": 32,
    "outer_lr": 0.0005,
    "inner_steps": 5,
    "inner_lr": 0.02,
    "train_support_min": 3,
    "train_support_max": 30,
    "eval_every": 10,
    "patience": 4,
    "checkpoint_every": 50,
    "finetune_steps": 5,
    "finetune_lr": 0.02,
}
QUICK = {"max_steps": 20, "global_epochs": 2, "eval_every": 10}


def mean_metrics(runs: list[dict]) -> dict:
    """Average ``{scenario: {size: {method: {metric}}}}`` over runs (keys present in all)."""
    out: dict = {}
    for scenario in runs[0]:
        out[scenario] = {}
        for size in runs[0][scenario]:
            out[scenario][size] = {}
            for method in runs[0][scenario][size]:
                values = [
                    r[scenario][size][method] for r in runs if method in r[scenario].get(size, {})
                ]
                out[scenario][size][method] = {
                    m: float(np.mean([v[m] for v in values])) for m in values[0]
                }
    return out


def merge(cards: list[dict]) -> dict:
    """One seed's metrics: baselines from the first card, each algorithm from its own card."""
    merged = json.loads(json.dumps(cards[0]))
    for card in cards[1:]:
        for scenario, sizes in card.items():
            for size, methods in sizes.items():
                for method, values in methods.items():
                    if method in ALGORITHMS or method == "metasgd":
                        merged[scenario][size][method] = values
    return merged


def add_methods(target: dict, extra: dict, *, check: str = BASELINE) -> None:
    """Add ``extra``'s methods into ``target`` (same layout); ``check`` must agree in both."""
    for scenario, sizes in extra.items():
        for size, methods in sizes.items():
            here = target.setdefault(scenario, {}).setdefault(size, {})
            if check in here and check in methods:
                assert abs(here[check]["mae"] - methods[check]["mae"]) < 1e-9, (
                    f"{scenario}/{size}: the cards' tasks differ from the benchmark's"
                )
            for method, values in methods.items():
                here.setdefault(method, values)


def prepare_split(df, config: dict, seed: int):  # type: ignore[no-untyped-def]
    """The trainer's split, encoding and bias baselines for one re-split (same tasks)."""
    from metarec.training.config import TrainingConfig
    from metarec.training.preparation import config_split, prepare

    cfg = TrainingConfig.build({**config, "seed": seed})
    return cfg, prepare(df, split=config_split(df, cfg, seed=seed), encoder=None, config=cfg)


def evaluation_tasks(data, cfg) -> dict:  # type: ignore[no-untyped-def]
    """``{scenario: {size: tasks}}``, exactly the trainer's evaluation tasks."""
    from metarec.training.methods import scenario_tasks, scenario_users

    out: dict = {}
    for scenario in cfg.scenarios:
        users = scenario_users(
            data, scenario, None, min_ratings=cfg.min_ratings, max_ratings=cfg.max_ratings
        )
        out[scenario.value] = {
            size: scenario_tasks(data, scenario, users, size) for size in cfg.support_sizes
        }
    return out


def factor_metrics(data, tasks: dict, factor_config, *, device: str) -> tuple[dict, dict, object]:
    """Baselines and the factor model on every scenario/size; returns (metrics, info, model)."""
    from metarec.learning.metrics import evaluate_predictions
    from metarec.training.factor_training import (
        FactorTrainingReport,
        factor_predictions,
        fit_factor_model,
    )
    from metarec.training.methods import evaluate_tasks

    report = FactorTrainingReport()
    t0 = time.perf_counter()
    model = fit_factor_model(
        data.source, data.split, data.encoder, config=factor_config, device=device, report=report
    )
    seconds = time.perf_counter() - t0
    metrics: dict = {}
    for scenario, sizes in tasks.items():
        metrics[scenario] = {}
        for size, chunk in sizes.items():
            if not chunk:
                continue
            row = evaluate_tasks(
                chunk, bias=data.bias, meta={}, global_model=None, finetune=None, device=device
            )
            preds = factor_predictions(model, chunk, device=device)
            row[FACTOR] = evaluate_predictions(preds, [t.query_y for t in chunk])
            metrics[scenario][size] = row
    info = {
        "seconds": seconds,
        "steps": report.steps,
        "best_step": report.best_step,
        "best_val_mae": report.best_val_mae,
    }
    return metrics, info, model


def leakage_check(df, config: dict, seed: int, factor_config, tasks: dict, model) -> dict:
    """Refit the factor model with every test user's rating removed from the data: the item
    parameters and test predictions must not change (bitwise)."""
    from metarec.training.factor_training import factor_predictions, fit_factor_model
    from metarec.training.preparation import prepare

    _, data = prepare_split(df, config, seed)
    kept = df[~df["user_id"].isin(data.split.test_users)].reset_index(drop=True)
    cfg, _ = prepare_split(df, config, seed)
    blind = prepare(kept, split=data.split, encoder=data.encoder, config=cfg)
    refit = fit_factor_model(blind.source, data.split, data.encoder, config=factor_config)
    same_items = all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), refit.state_dict().values(), strict=True)
    )
    chunk = tasks["new_user"]["5"]
    a = factor_predictions(model, chunk, device="cpu")
    b = factor_predictions(refit, chunk, device="cpu")
    max_diff = max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))
    return {
        "resplit": seed,
        "identical_parameters": same_items,
        "max_prediction_diff": max_diff,
        "passed": same_items and max_diff == 0.0,
    }


def ratio_table(change: dict):
    """A rich table of the paired MAE/RMSE changes vs user_item_bias (new users)."""
    from rich.table import Table

    table = Table(title="new users: change vs user_item_bias, mean over re-splits [95% CI]")
    table.add_column("method")
    for size in change:
        table.add_column(f"{size} MAE", justify="right")
        table.add_column(f"{size} RMSE", justify="right")
    methods = list(next(iter(change.values())))
    for method in methods:
        cells = []
        for size in change:
            for metric in ("mae", "rmse"):
                r = change[size].get(method, {}).get(metric)
                cells.append(
                    "-"
                    if r is None
                    else f"{r['change']:+.2%} [{r['ci95'][0]:+.1%},{r['ci95'][1]:+.1%}]"
                )
        table.add_row(method, *cells)
    return table


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--resplits", type=int, default=10, help="Re-splits: seeds 0..N-1.")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="Explicit seeds.")
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    parser.add_argument(
        "--skip-melu", action="store_true", help="Skip MeLU meta-training (baselines + factor)."
    )
    parser.add_argument("--quick", action="store_true", help="Smoke run: 1 seed, few steps.")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    parser.add_argument("--set", nargs="*", default=[], help="Config overrides key=json.")
    parser.add_argument(
        "--factor-set", nargs="*", default=[], help="FactorTrainingConfig overrides key=json."
    )
    parser.add_argument("--keep", type=Path, default=None, help="Keep the home here.")
    return parser.parse_args()


def settings(args: argparse.Namespace) -> tuple[dict, dict, list[int]]:
    """(TrainingConfig values, FactorTrainingConfig overrides, seeds) from the command line."""
    config = dict(CONFIG)
    seeds = args.seeds if args.seeds is not None else list(range(args.resplits))
    factor_overrides: dict = {}
    if args.quick:
        config.update(QUICK)
        seeds = seeds[:1]
        factor_overrides["meta_steps"] = 20
    for target, items in ((config, args.set), (factor_overrides, args.factor_set)):
        for item in items:
            key, value = item.split("=", 1)
            target[key] = json.loads(value)
    return config, factor_overrides, seeds


def train_algorithms(training_set: Path, config: dict, seed: int, args, workdir: Path, console):  # type: ignore[no-untyped-def]
    """Meta-train each MeLU algorithm on re-split ``seed``; returns (card metrics, seconds)."""
    from metarec.training.config import TrainingConfig
    from metarec.training.trainer import train

    cards, seconds = [], {}
    for algorithm in [] if args.skip_melu else list(args.algorithms):
        run = TrainingConfig.build(
            {**config, "algorithm": algorithm, "seed": seed, "device": args.device}
        )
        t0 = time.perf_counter()
        card = train(training_set, config=run, out=workdir / f"{algorithm}-{seed}")
        key = f"{algorithm}/seed{seed}"
        seconds[key] = time.perf_counter() - t0
        console.print(
            f"re-split {seed} {algorithm}: {seconds[key]:.0f}s, "
            f"{card.training['steps']} steps (best {card.training['best_step']})"
        )
        cards.append(card.metrics)
    return cards, seconds


def run_resplits(training_set: Path, args, config, factor_overrides, seeds, workdir, console):  # type: ignore[no-untyped-def]
    """Per re-split: baselines and the factor fold-in, then each MeLU algorithm's card.

    Returns (metrics per re-split, training seconds, factor training info, leakage check).
    """
    import pandas as pd
    from metarec.training.factor_settings import FactorTrainingConfig
    from metarec.training.trainer import resolve_device

    device = str(resolve_device(args.device))
    df = pd.read_parquet(training_set)
    per_split, train_seconds, factor_info, leak = [], {}, {}, None
    for seed in seeds:
        factor_config = FactorTrainingConfig(**{**factor_overrides, "seed": seed})
        cfg, data = prepare_split(df, config, seed)
        tasks = evaluation_tasks(data, cfg)
        metrics, info, model = factor_metrics(data, tasks, factor_config, device=device)
        factor_info[f"seed{seed}"] = info
        console.print(
            f"re-split {seed} {FACTOR}: {info['seconds']:.0f}s, {info['steps']} steps "
            f"(best {info['best_step']})"
        )
        if leak is None:
            leak = leakage_check(df, config, seed, factor_config, tasks, model)
            console.print(f"leakage check: {leak}", markup=False)
        cards, seconds = train_algorithms(training_set, config, seed, args, workdir, console)
        train_seconds.update(seconds)
        if cards:
            add_methods(metrics, merge(cards))
        per_split.append(metrics)
    return per_split, train_seconds, factor_info, leak


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)

    from metarec.training.evaluation import metrics_table
    from metarec.training.factor_settings import FactorTrainingConfig
    from rich.console import Console

    console = Console(stderr=True, width=230)
    config, factor_overrides, seeds = settings(args)
    algorithms = [] if args.skip_melu else list(args.algorithms)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="metarec-quality-") as tmp:
        home = args.keep or Path(tmp) / "home"
        console.print(f"building the training set through Feast in {home} ...")
        training_set = build_training_set(args.data.resolve(), home)
        prep_s = time.perf_counter() - started
        per_split, train_seconds, factor_info, leak = run_resplits(
            training_set, args, config, factor_overrides, seeds, Path(tmp), console
        )
    metrics = mean_metrics(per_split)
    console.print(metrics_table(metrics, title=f"ml-100k cold start, mean of re-splits {seeds}"))
    meta_methods = [*algorithms, FACTOR]
    change = ratios(per_split, [m for m in metrics["new_user"]["5"] if m != BASELINE])
    console.print(ratio_table(change))
    checks = targets(change, meta_methods)
    for name, check in checks.items():
        if isinstance(check, dict):
            console.print("met   " if check["met"] else "MISSED", f"{name}: {check}", markup=False)
    result = {
        "benchmark": "coldstart_quality",
        "data": str(args.data),
        "quick": args.quick,
        "seeds": seeds,
        "resplits": len(seeds),
        "algorithms": algorithms,
        "skip_melu": args.skip_melu,
        "config": config,
        "factor_config": FactorTrainingConfig(**factor_overrides).to_dict(),
        "seconds": {
            "prepare": prep_s,
            "train_and_evaluate": train_seconds,
            "factor": {k: v["seconds"] for k, v in factor_info.items()},
            "total": time.perf_counter() - started,
        },
        "max_train_seconds": max([*train_seconds.values(), 0.0]),
        "factor_training": factor_info,
        "leakage_check": leak,
        "metrics": metrics,
        "ratios": change,
        "legacy_targets": legacy_targets(metrics, meta_methods),
        "targets": checks,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
