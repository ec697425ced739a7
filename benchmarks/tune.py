"""A fixed 20-trial Optuna study on MovieLens-100K, 2 workers, pruning on; best vs default.

The training set comes through MetaRec's own path in a METAREC home (``ml100k.py``: ingest →
Feast → historical retrieval → validation gate). The study is ``metarec tune``'s use case
(:func:`metarec.ops.tuning.tune`) with the shipped tuning file
(``platform/metarec/tuning/default_space.yaml``), on a SQLite storage in the home, without the
gate (``register_best`` off: the benchmark measures the search, not the registration).

Budget of every trial (the tuning file's ``trial`` block): the rating model alone (no ranker,
no factor fold-in), at most 120 meta-training steps, validation every 5 steps on the
validation users (the objective: their best MAE, what early stopping keeps; never test users),
early stop after 6 validations without gain, evaluation of one cell (new users, 10 ratings).
A trial takes ≈ 10–25 s on this 2-core CPU, so 20 trials over 2 workers fit in ≈ 5 min; the
median pruner (3 startup trials, 10 warm-up steps) stops bad trials early.

The default configuration (``TrainingConfig()`` defaults) is trained the same way (same data,
same split, same trial budget, same objective) and printed beside the best.

Prints one JSON object: ``best_objective``, ``default_objective``, ``best_beats_default``,
``improvement``, ``wall_s`` (the study), ``trials`` (complete / pruned / fail), ``best_trial``,
``best_params``, ``reports`` (paths), ``budget``.

    python benchmarks/tune.py [--data ../shared/datasets/ml-100k.zip] [--home DIR]
        [--trials 20] [--workers 2] [--space FILE] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "ml-100k.zip"
STUDY = "ml100k-benchmark"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ml-100k.zip")
    parser.add_argument(
        "--home", type=Path, default=None, help="METAREC home (default: a temporary folder)"
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--space", type=Path, default=None, help="tuning file (default: shipped)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def training_set(data: Path, home: Path) -> Path:
    """The home's validated ml-100k training set (built once per home)."""
    from ml100k import build_training_set

    existing = home / "training_sets" / "ml-100k.parquet"
    return existing if existing.is_file() else build_training_set(data, home)


def default_objective(settings: Any, space: Path | None, path: Path) -> float:
    """The default configuration's objective, trained with the same trial budget."""
    import optuna
    from metarec.ops.tuning import tuning_folder
    from metarec.training.config import TrainingConfig
    from metarec.tuning.objective import TrialSetup, run_trial
    from metarec.tuning.spec import load_spec

    setup = TrialSetup(
        spec=load_spec(space),
        base=TrainingConfig(),
        training_set=str(path),
        workdir=tuning_folder(settings, STUDY) / "default",
    )
    return run_trial(optuna.trial.FixedTrial({}), setup, {})


def result(outcome: Any, default: float, wall_s: float, spec: Any) -> dict[str, Any]:
    """The benchmark's JSON object."""
    best = outcome.best_value
    better = best is not None and (
        best < default if spec.objective.direction == "minimize" else best > default
    )
    return {
        "objective": outcome.objective,
        "direction": outcome.direction,
        "best_objective": best,
        "default_objective": default,
        "best_beats_default": better,
        "improvement": None if best is None else abs(default - best) / default,
        "wall_s": round(wall_s, 1),
        "trials": {k: outcome.counts.get(k, 0) for k in ("complete", "pruned", "fail")},
        "best_trial": outcome.best_trial,
        "best_params": outcome.best_params,
        "reports": outcome.reports,
        "budget": spec.trial,
        "pruner": spec.pruner.model_dump(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print (and optionally write) its JSON."""
    args = parse_args(argv)
    import torch
    from metarec.config import load_settings
    from metarec.environment import apply_process_environment
    from metarec.ops.tuning import TuneRequest, tune
    from metarec.tuning.spec import load_spec

    torch.set_num_threads(1)  # one thread per worker on this 2-core CPU (as the workers)
    home = args.home or Path(tempfile.mkdtemp(prefix="metarec-tune-bench-"))
    settings = load_settings(home=home)
    apply_process_environment(settings)
    path = training_set(args.data, home)
    spec = load_spec(args.space)
    default = default_objective(settings, args.space, path)
    request = TuneRequest(
        space=args.space,
        trials=args.trials,
        workers=args.workers,
        study=f"{STUDY}-{int(time.time())}",
        storage=f"sqlite:///{home / 'tune-benchmark.db'}",
        training_set=str(path),
        register_best=False,
    )
    started = time.perf_counter()
    outcome = tune(
        settings,
        request,
        on_trial=lambda t: print(f"trial {t.number} {t.state.name.lower()} {t.value}", flush=True),
    )
    payload = result(outcome, default, time.perf_counter() - started, spec)
    text = json.dumps(payload)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    return payload


if __name__ == "__main__":
    main()
