"""Do the declared features help new users? Served ranker with and without them, and popularity.

On a generated non-MovieLens catalogue with planted structure (users in hidden segments that
prefer some hidden item clusters; ``country`` reveals the segment, ``category``/``tags``/
``price``/``text_embedding`` reveal the cluster), the training set comes through MetaRec's own
path in a temporary METAREC home: ``write_catalogue`` → ``ingest`` (table source) → Feast
``apply_features`` → point-in-time ``build_training_set``. Then, per paired re-split of the users
(``seed`` = ``split_seed`` = 0, 1, …), the library trains the catalogue ranker exactly as
``metarec train`` does (``prepare`` → ``trainer.rank_catalogue``: baselines, meta-ranker, plain
ranker, blend chosen on validation users) twice on the same split:

* ``all``: every declared feature of the training set's manifest (``inputs=input_fields``);
* ``without``: the same inputs with every declared feature ``skip``ped (ids only).

It reports NDCG@20 of the served ranker (``ranker``), the unblended meta-ranker and popularity
for NEW users (held-out test users, the whole catalogue ranked) at each support size K (K = 0:
no support yet, the ranker ranks from the user's attributes alone), per split and as medians
with the paired differences (all − without, all − popularity) and their min/max over splits.
Progress goes to stderr; one JSON object to stdout (and ``--out``).

    python benchmarks/features_ablation.py [--preset large] [--splits 3]
        [--preferred-share 0.8] [--country-purity 0.8] [--vector-noise 0.5]
        [--ranker-max-steps 2500] [--cold-start-share 0.25] [--ks 0 1 3 5 10 20]
        [--orders time] [--label rating|event] [--ids int|text] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("ranker", "meta_ranker", "popularity")
DEFAULT_STEPS = 2500  # the trainer's: 3 splits × 2 variants of the large preset in ~25 min (2 CPUs)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("small", "large"), default="large")
    parser.add_argument("--splits", type=int, default=3, help="Paired user re-splits (seeds).")
    parser.add_argument("--catalogue-seed", type=int, default=0)
    parser.add_argument(
        "--label",
        choices=("rating", "event"),
        default="rating",
        help="1-5 ratings, or implicit events (views, clicks, purchases; the ranker alone).",
    )
    parser.add_argument("--ids", choices=("int", "text"), default="int", help="Id format.")
    parser.add_argument("--preferred-share", type=float, default=None)
    parser.add_argument("--country-purity", type=float, default=None)
    parser.add_argument("--vector-noise", type=float, default=None)
    parser.add_argument("--ranker-max-steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--ranker-eval-every", type=int, default=50)
    parser.add_argument(
        "--cold-start-share",
        type=float,
        default=None,
        help="ranker_cold_start_share of the training config (default: the config's).",
    )
    parser.add_argument("--ks", type=int, nargs="+", default=[0, 1, 3, 5, 10, 20])
    parser.add_argument("--orders", nargs="+", choices=("time", "random"), default=["time"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default).")
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    return parser.parse_args(argv)


def catalogue_spec(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The generated catalogue's spec: the preset's sizes, the label and id format asked."""
    from metarec.data.catalogue import PRESETS, CatalogueSpec

    knobs = {
        "preferred_share": args.preferred_share,
        "country_purity": args.country_purity,
        "vector_noise": args.vector_noise,
    }
    return CatalogueSpec(
        **PRESETS[args.preset],
        label=args.label,
        ids=args.ids,
        seed=args.catalogue_seed,
        **{k: v for k, v in knobs.items() if v is not None},
    )


def build_training_set(spec, tmp: Path):  # type: ignore[no-untyped-def]
    """write_catalogue → ingest → Feast apply → historical retrieval; (df, manifest)."""
    from metarec.config import load_settings
    from metarec.data.catalogue_files import write_catalogue
    from metarec.data.ingest import DataSource
    from metarec.environment import apply_process_environment
    from metarec.features.store import apply_features
    from metarec.features.training_set import build_training_set as build
    from metarec.features.training_set import load_training_set
    from metarec.ops.ingestion import ingest

    schema = write_catalogue(tmp / "catalogue", spec=spec)
    settings = load_settings(home=tmp / "home")
    apply_process_environment(settings)
    ingested = ingest(settings, source=DataSource.TABLE, schema=schema)
    apply_features(settings, ingested.snapshot)
    path = tmp / "training_set.parquet"
    build(settings, out=path)
    return load_training_set(path)


def variant_config(args: argparse.Namespace, *, seed: int, skip: list[str]):  # type: ignore[no-untyped-def]
    """The training config of one run: new-user scenario, the cells, ``skip``ped inputs."""
    from metarec.training.config import TrainingConfig
    from metarec.training.scenarios import Scenario

    return TrainingConfig.build(
        {
            "seed": seed,
            "split_seed": seed,
            "device": "cpu",
            "ranker_max_steps": args.ranker_max_steps,
            "ranker_eval_every": args.ranker_eval_every,
            **(
                {}
                if args.cold_start_share is None
                else {"ranker_cold_start_share": args.cold_start_share}
            ),
            "ranking_support_sizes": tuple(args.ks),
            "ranking_orders": tuple(args.orders),
            "scenarios": (Scenario.NEW_USER,),
            "inputs": {name: "skip" for name in skip},
        }
    )


def run_variant(df, manifest, args: argparse.Namespace, *, seed: int, skip: list[str]) -> dict:  # type: ignore[no-untyped-def]
    """Prepare and rank the catalogue as the trainer does; NDCG@20 per cell and method."""
    import torch
    from metarec.training.preparation import config_split, interactions, prepare
    from metarec.training.trainer import rank_catalogue, seed_everything

    config = variant_config(args, seed=seed, skip=skip)
    df = interactions(df)  # implicit events: the positive interactions the ranker learns from
    seed_everything(seed)
    split = config_split(df, config)
    data = prepare(df, split=split, encoder=None, config=config, inputs=manifest.input_fields)
    tag = f"split {seed} {'without' if skip else 'all'}"

    def progress(event) -> None:  # type: ignore[no-untyped-def]
        if event.phase == "ranker" and event.step % 100 == 0:
            log(f"{tag}: ranker step {event.step}/{event.total}")

    keep: dict = {}
    started = time.perf_counter()
    run = rank_catalogue(
        data,
        config=config,
        rating_model=None,
        device=torch.device("cpu"),
        on_progress=progress,
        keep_per_user=keep,
    )
    seconds = time.perf_counter() - started
    table = run.table.get("new_user", {})
    cells = {
        cell: {m: float(values[m]["ndcg@20"]) for m in METHODS if m in values}
        for cell, values in table.items()
    }
    users = {cell: len(per["popularity"]) for cell, per in keep.get("new_user", {}).items()}
    log(f"{tag}: {seconds:.0f}s, blend {run.card['blend_weight']}, " + _brief(cells))
    return {
        "ndcg@20": cells,
        "users": users,
        "blend_weight": run.card["blend_weight"],
        "encoder_fields": [f.name for f in data.encoder.fields],
        "seconds": round(seconds, 1),
        "test_users": len(split.test_users),
    }


def _brief(cells: dict) -> str:
    return ", ".join(
        f"{cell} ranker={v.get('ranker', float('nan')):.4f} pop={v.get('popularity', 0):.4f}"
        for cell, v in cells.items()
    )


def spread(values: list[float]) -> dict:
    """Median, min and max over splits (and the per-split values)."""
    arr = np.asarray(values, float)
    return {
        "median": round(float(np.median(arr)), 5),
        "min": round(float(arr.min()), 5),
        "max": round(float(arr.max()), 5),
        "per_split": [round(float(v), 5) for v in arr],
    }


def summarise(runs: list[dict]) -> dict:
    """Per cell: medians of every method and variant, paired differences over splits."""
    out: dict = {}
    for cell in runs[0]["all"]["ndcg@20"]:

        def value(run: dict, variant: str, method: str, cell: str = cell) -> float:
            return run[variant]["ndcg@20"][cell][method]

        here: dict = {"users": runs[0]["all"]["users"].get(cell)}
        for variant in ("all", "without"):
            for method in ("ranker", "meta_ranker"):
                here[f"{method}_{variant}"] = spread([value(r, variant, method) for r in runs])
        here["popularity"] = spread([value(r, "all", "popularity") for r in runs])
        here["diff_ranker_all_minus_without"] = spread(
            [value(r, "all", "ranker") - value(r, "without", "ranker") for r in runs]
        )
        here["diff_ranker_all_minus_popularity"] = spread(
            [value(r, "all", "ranker") - value(r, "all", "popularity") for r in runs]
        )
        here["diff_ranker_without_minus_popularity"] = spread(
            [value(r, "without", "ranker") - value(r, "all", "popularity") for r in runs]
        )
        here["diff_meta_ranker_all_minus_without"] = spread(
            [value(r, "all", "meta_ranker") - value(r, "without", "meta_ranker") for r in runs]
        )
        out[cell] = here
    return out


def run_benchmark(args: argparse.Namespace) -> dict:
    """Build the training set once, then both variants on every paired split."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    spec = catalogue_spec(args)
    with tempfile.TemporaryDirectory(prefix="metarec-ablation-") as tmp:
        log(f"generating and ingesting the {args.preset} catalogue through Feast ...")
        df, manifest = build_training_set(spec, Path(tmp))
        prepared_s = time.perf_counter() - started
        declared = [f.name for f in manifest.input_fields]
        log(f"{len(df):,} rows; declared features {declared} ({prepared_s:.0f}s)")
        runs = []
        for seed in range(args.splits):
            runs.append(
                {
                    "split_seed": seed,
                    "all": run_variant(df, manifest, args, seed=seed, skip=[]),
                    "without": run_variant(df, manifest, args, seed=seed, skip=declared),
                }
            )
    return {
        "benchmark": "features_ablation",
        "scenario": "new_user (held-out test users, whole catalogue ranked)",
        "metric": "ndcg@20",
        "sizes": {
            "preset": args.preset,
            "n_users": spec.n_users,
            "n_items": spec.n_items,
            "training_set_rows": len(df),
            "ranker_max_steps": args.ranker_max_steps,
            "ranker_max_steps_trainer_default": 2500,
            "test_users_per_split": runs[0]["all"]["test_users"],
        },
        "catalogue": spec.model_dump(
            include={
                "seed",
                "label",
                "ids",
                "preferred_share",
                "country_purity",
                "vector_noise",
                "age_shift",
            }
        ),
        "declared_features": declared,
        "encoder_fields": {v: runs[0][v]["encoder_fields"] for v in ("all", "without")},
        "splits": args.splits,
        "cells": summarise(runs),
        "blend_weights": {v: [r[v]["blend_weight"] for r in runs] for v in ("all", "without")},
        "seconds": {
            "training_set": round(prepared_s, 1),
            "runs": {
                f"{r['split_seed']}/{v}": r[v]["seconds"] for r in runs for v in ("all", "without")
            },
            "total": round(time.perf_counter() - started, 1),
        },
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run_benchmark(args)
    text = json.dumps(result)
    if args.out:
        args.out.write_text(text + "\n")
    print(text, flush=True)


if __name__ == "__main__":
    main()
