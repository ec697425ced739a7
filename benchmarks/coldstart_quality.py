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

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "ml-100k.zip"
ALGORITHMS = ("maml", "fomaml", "reptile")
FACTOR = "factor_map"
BASELINE = "user_item_bias"
SIZES = ("5", "10", "20", "all")
# Issue 16, item 7: the best meta-learned model vs user + item bias, new users (MAE change).
REQUIRED = {"5": 0.0, "10": -0.02, "20": -0.02, "all": 0.0}
GOALS = {"5": -0.020, "10": -0.027, "20": -0.033, "all": -0.038}
SUSPECT_5_SHOT_GAIN = 0.03

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


def build_training_set(data: Path, home: Path) -> Path:
    """Ingest → Feast apply → historical retrieval → validation gate, in ``home``."""
    from metarec.config import load_settings
    from metarec.data.ingest import DataSource, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.environment import apply_process_environment
    from metarec.features.store import apply_features
    from metarec.features.training_set import build_training_set as build
    from metarec.validation.gate import build_reference_profile, validate_training_set

    settings = load_settings(home=home)
    apply_process_environment(settings)
    dataset = read_source(DataSource.ML_100K, path=data, download_dir=settings.paths.home)
    snapshot = write_snapshot(dataset, SnapshotStore(settings.paths.snapshots))
    apply_features(settings, snapshot)
    path = settings.paths.training_sets / "ml-100k.parquet"
    build(settings, out=path)
    # A fresh home has no reference profile yet: accept this training set as the reference
    # (integrity checked), then run the full gate on it, as the first pipeline run does.
    build_reference_profile(settings, training_set=path)
    result = validate_training_set(settings, training_set=path)
    if not result.success:
        raise SystemExit(f"validation gate failed on {path}: {result}")
    return path


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


def legacy_targets(metrics: dict, algorithms: list[str]) -> dict:
    """The issue's earlier new-user targets (6 % / 4 % MAE, nDCG@3 above item bias)."""
    new_user = metrics["new_user"]
    checks = {}
    for size, methods in new_user.items():
        present = [a for a in algorithms if a in methods]
        if not present:
            continue
        best = min(present, key=lambda a: methods[a]["mae"])
        base = methods[BASELINE]["mae"]
        need = 0.06 if size == "5" else 0.04
        gain = 1 - methods[best]["mae"] / base
        checks[f"new_user/{size}: best meta MAE >= {need:.0%} below user_item_bias"] = {
            "best": best,
            "mae": methods[best]["mae"],
            "user_item_bias": base,
            "improvement": gain,
            "met": gain >= need,
        }
        checks[f"new_user/{size}: nDCG@3 above item_bias"] = {
            "best": best,
            "ndcg@3": methods[best]["ndcg@3"],
            "item_bias": methods["item_bias"]["ndcg@3"],
            "met": methods[best]["ndcg@3"] > methods["item_bias"]["ndcg@3"],
        }
    return checks


def paired_ratio(values: list[float], base: list[float]) -> dict[str, float]:
    """Mean of the per-re-split ratios ``values/base`` minus 1, with a 95 % t-interval."""
    from scipy import stats

    change = np.asarray(values) / np.asarray(base) - 1.0
    n = len(change)
    half = float(stats.t.ppf(0.975, n - 1) * change.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
    mean = float(change.mean())
    return {"change": mean, "ci95": [mean - half, mean + half], "n": n}


def ratios(per_split: list[dict], methods: list[str]) -> dict:
    """``{size: {method: {metric: paired_ratio}}}`` on new users, against user_item_bias."""
    out: dict = {}
    for size in per_split[0]["new_user"]:
        out[size] = {}
        for method in methods:
            rows = [r["new_user"][size] for r in per_split if method in r["new_user"][size]]
            if len(rows) != len(per_split):
                continue
            out[size][method] = {
                metric: paired_ratio(
                    [r[method][metric] for r in rows], [r[BASELINE][metric] for r in rows]
                )
                for metric in ("mae", "rmse")
            }
    return out


def targets(change: dict, meta_methods: list[str]) -> dict:
    """Issue 16 item 7: the best meta-learned model's MAE vs user_item_bias at every size."""
    checks: dict = {}
    for size in SIZES:
        present = {m: change[size][m] for m in meta_methods if m in change.get(size, {})}
        if not present:
            continue
        best = min(present, key=lambda m: present[m]["mae"]["change"])
        mae = present[best]["mae"]
        required, goal = REQUIRED[size], GOALS[size]
        word = "at or below" if required == 0 else f">= {-required:.0%} below"
        checks[f"new_user/{size}: best meta MAE {word} user_item_bias"] = {
            "best": best,
            "mae_change": mae["change"],
            "ci95": mae["ci95"],
            "rmse_change": present[best]["rmse"]["change"],
            "required": required,
            "met": mae["change"] <= required,
        }
        checks[f"new_user/{size}: goal {goal:+.1%}"] = {
            "best": best,
            "mae_change": mae["change"],
            "goal": goal,
            "met": mae["change"] <= goal,
        }
    five = change.get("5", {})
    if any(-v["mae"]["change"] > SUSPECT_5_SHOT_GAIN for v in five.values()):
        checks["new_user/5: gain above 3 % (check for leakage)"] = {"met": False}
    checks["all_required_met"] = all(
        c["met"] for k, c in checks.items() if "goal" not in k and isinstance(c, dict)
    )
    return checks


def prepare_split(df, config: dict, seed: int):
    """The trainer's split, encoding and bias baselines for one re-split (same tasks)."""
    from metarec.training.config import TrainingConfig
    from metarec.training.scenarios import plan_split
    from metarec.training.trainer import prepare

    cfg = TrainingConfig.build({**config, "seed": seed})
    split = plan_split(
        df,
        seed=seed,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        new_item_fraction=cfg.new_item_fraction,
    )
    return cfg, prepare(df, split=split, encoder=None, config=cfg)


def evaluation_tasks(data, cfg) -> dict:
    """``{scenario: {size: tasks}}``, exactly the trainer's evaluation tasks."""
    from metarec.training.scenarios import parse_support_size

    out: dict = {}
    for scenario in cfg.scenarios:
        users = data.source.eligible_users(
            scenario, data.split, min_ratings=cfg.min_ratings, max_ratings=cfg.max_ratings
        )
        out[scenario.value] = {
            size: data.source.evaluation_tasks(
                scenario, users, support_size=parse_support_size(size), seed=data.split.seed
            )
            for size in cfg.support_sizes
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
    from metarec.training.trainer import prepare

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


def main() -> None:
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import pandas as pd
    from metarec.training.config import TrainingConfig
    from metarec.training.evaluation import metrics_table
    from metarec.training.factor_training import FactorTrainingConfig
    from metarec.training.trainer import resolve_device, train
    from rich.console import Console

    console = Console(stderr=True, width=230)
    config = dict(CONFIG)
    seeds = args.seeds if args.seeds is not None else list(range(args.resplits))
    algorithms = [] if args.skip_melu else list(args.algorithms)
    factor_overrides: dict = {}
    if args.quick:
        config.update(QUICK)
        seeds = seeds[:1]
        factor_overrides["meta_steps"] = 20
    for item in args.set:
        key, value = item.split("=", 1)
        config[key] = json.loads(value)
    for item in args.factor_set:
        key, value = item.split("=", 1)
        factor_overrides[key] = json.loads(value)
    device = str(resolve_device(args.device))
    started = time.perf_counter()
    per_split, train_seconds, factor_info, leak = [], {}, {}, None
    with tempfile.TemporaryDirectory(prefix="metarec-quality-") as tmp:
        home = args.keep or Path(tmp) / "home"
        console.print(f"building the training set through Feast in {home} ...")
        training_set = build_training_set(args.data.resolve(), home)
        prep_s = time.perf_counter() - started
        df = pd.read_parquet(training_set)
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
            cards = []
            for algorithm in algorithms:
                run = TrainingConfig.build(
                    {**config, "algorithm": algorithm, "seed": seed, "device": args.device}
                )
                t0 = time.perf_counter()
                card = train(training_set, config=run, out=Path(tmp) / f"{algorithm}-{seed}")
                train_seconds[f"{algorithm}/seed{seed}"] = time.perf_counter() - t0
                console.print(
                    f"re-split {seed} {algorithm}: "
                    f"{train_seconds[f'{algorithm}/seed{seed}']:.0f}s, "
                    f"{card.training['steps']} steps (best {card.training['best_step']})"
                )
                cards.append(card.metrics)
            if cards:
                add_methods(metrics, merge(cards))
            per_split.append(metrics)
    metrics = mean_metrics(per_split)
    console.print(metrics_table(metrics, title=f"ml-100k cold start, mean of re-splits {seeds}"))
    meta_methods = [*algorithms, FACTOR]
    methods = [m for m in metrics["new_user"]["5"] if m != BASELINE]
    change = ratios(per_split, methods)
    console.print(ratio_table(change))
    checks = targets(change, meta_methods)
    legacy = legacy_targets(metrics, meta_methods)
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
        "legacy_targets": legacy,
        "targets": checks,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
