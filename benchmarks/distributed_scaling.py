"""Distributed meta-training scaling: tasks/s and speed-up at world size 1 and 2 (torchrun's way).

Second-order MAML, the throughput benchmark's model and tasks (8 fields × 32-d embeddings →
64 → 64 → 1, 10-shot support, 10 query ratings, 5 inner steps), the same global meta-batch
(``--tasks``) at every world size: each rank trains on its contiguous part, the gradients are
all-reduced (:mod:`metarec.training.distributed`), every rank takes the same AdamW step. A
timed step is the whole outer step (inner loops, backward, all-reduce, clip, optimizer) as rank
0 sees it, after a barrier; tasks/s = global tasks / median step time. The ranks are local
processes with torchrun's environment (``gloo`` on CPU, ``nccl`` on CUDA), one torch thread
each on CPU, so world size 2 uses twice the cores of world size 1. Prints a table, then one JSON
object.

    python benchmarks/distributed_scaling.py [--tasks 256] [--world-sizes 1 2]
    python benchmarks/distributed_scaling.py --tasks 8192 --device cuda   # one GPU: world size 1

On a machine with one GPU, ``--device cuda`` runs world size 1 on it (the issue's target:
≥ 300,000 tasks/s at 8,192 tasks per batch); with G GPUs, ``--world-sizes 1 G`` runs one rank
per GPU over NCCL.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from meta_training_throughput import CONFIG, make_tasks
from metarec.learning.algorithms import Algorithm, InnerLoop, meta_step
from metarec.learning.model import MeLU
from metarec.learning.tasks import collate
from metarec.testing.distributed import run_ranks
from metarec.training.distributed import Ranks, part_bounds, process_group

TARGET_GPU_TASKS_PER_S = 300_000.0


def rank_main(args: dict, out: str) -> None:
    """One rank: time ``steps`` full outer steps on its part of the global meta-batch."""
    device = torch.device(args["device"])
    torch.set_num_threads(args["threads"])
    ranks = Ranks.from_environment(device)
    with process_group(ranks):
        torch.manual_seed(0)
        model = MeLU(CONFIG).to(ranks.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
        tasks = make_tasks(args["tasks"], shots=args["shots"], query=args["query"], seed=0)
        batch = collate(ranks.part_of(tasks)).to(ranks.device)
        inner = InnerLoop(steps=args["inner_steps"], lr=0.01)
        sync = ranks.gradient_sync(Algorithm.MAML)

        def step() -> None:
            meta_step(model, optimizer, batch, algorithm=Algorithm.MAML, inner=inner, sync=sync)

        times = timed(step, ranks, warmup=args["warmup"], steps=args["steps"])
    if ranks.is_main:
        Path(out).write_text(json.dumps(times))


def timed(step, ranks: Ranks, *, warmup: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``step`` (after ``warmup``), ranks aligned."""
    cuda = ranks.device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(ranks.device)) if cuda else (lambda: None)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync()
        ranks.barrier()
        start = time.perf_counter()
        step()  # its all-reduce waits for the slowest rank
        sync()
        times.append(time.perf_counter() - start)
    return times


def run_world(world: int, args: argparse.Namespace) -> dict[str, object]:
    """Run ``world`` ranks; tasks/s and step times as rank 0 measured them."""
    settings = {k: getattr(args, k) for k in ("tasks", "shots", "query", "inner_steps", "steps")}
    settings.update(device=args.device, threads=args.threads, warmup=args.warmup)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "times.json"
        run_ranks(rank_main, world, settings, str(out))
        times = json.loads(out.read_text())
    seconds = statistics.median(times)
    return {
        "world_size": world,
        "tasks_per_rank": [
            stop - start
            for start, stop in (
                part_bounds(args.tasks, rank=r, world_size=world) for r in range(world)
            )
        ],
        "seconds_per_step": seconds,
        "tasks_per_s": args.tasks / seconds,
        "step_seconds": times,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=256, help="Global meta-batch (tasks).")
    parser.add_argument("--world-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--query", type=int, default=10)
    parser.add_argument("--inner-steps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=7, help="Timed outer steps per world size.")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank.")
    args = parser.parse_args()
    if args.world_sizes is None:
        args.world_sizes = [1] if args.device == "cuda" else [1, 2]
    return args


def report(result: dict) -> None:
    """Print the table, then the JSON object."""
    print(f"{'world size':<12}{'s/step':>12}{'tasks/s':>14}{'speedup':>10}")
    for row in result["runs"]:
        speedup = row["tasks_per_s"] / result["runs"][0]["tasks_per_s"]
        print(
            f"{row['world_size']:<12}{row['seconds_per_step']:>12.4f}"
            f"{row['tasks_per_s']:>14.1f}{speedup:>10.2f}"
        )
    print(json.dumps(result))


def main() -> None:
    args = parse_args()
    runs = [run_world(world, args) for world in args.world_sizes]
    base = runs[0]["tasks_per_s"]
    result: dict[str, object] = {
        "benchmark": "distributed_scaling",
        "algorithm": "maml (second order)",
        "device": args.device,
        "backend": "nccl" if args.device == "cuda" else "gloo",
        "torch_threads_per_rank": args.threads,
        "tasks_per_batch": args.tasks,
        "shots": args.shots,
        "query": args.query,
        "inner_steps": args.inner_steps,
        "model": "8 fields x 32-d embeddings -> 64 -> 64 -> 1",
        "runs": runs,
        "speedup": {str(r["world_size"]): r["tasks_per_s"] / base for r in runs},
    }
    if args.device == "cuda":
        best = max(r["tasks_per_s"] for r in runs)
        result["target_tasks_per_s"] = TARGET_GPU_TASKS_PER_S
        result["target_met"] = bool(args.tasks >= 8192 and best >= TARGET_GPU_TASKS_PER_S)
    report(result)


if __name__ == "__main__":
    main()
