"""Meta-training throughput: MetaRec's batched (vmap) MAML step vs a per-task Python loop.

Same model, same data, one run: second-order MAML, 10-shot support, 10 query ratings, 5 inner
steps, MeLU-sized model (8 fields × 32-d embeddings → 64 → 64 → 1). Both compute the
meta-gradient of the mean query loss; the script checks the gradients agree, then times each.
The loop baseline adapts one task at a time with ``torch.autograd.grad(create_graph=True)``
(the MeLU reference code's way). Prints a table, then one JSON object.

    python benchmarks/meta_training_throughput.py [--tasks 256] [--device auto]
    python benchmarks/meta_training_throughput.py --tasks 8192 --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from metarec.learning.algorithms import InnerLoop, meta_loss
from metarec.learning.model import MeLU, ModelConfig
from metarec.learning.tasks import Task, collate

FIELDS = (
    "gender",
    "age_bucket",
    "occupation",
    "zip_prefix",
    "release_bucket",
    "user_id",
    "item_id",
)
SIZES = (3, 8, 22, 400, 20, 944, 1683)
CONFIG = ModelConfig(
    field_names=FIELDS,
    field_sizes=SIZES,
    bags=((19, 6),),
    embedding_dim=32,
    hidden=(64, 64),
    output_bias=3.5,
)  # 7 categorical fields + genres = 8 fields × 32-d → 256 → 64 → 64 → 1


def make_tasks(n_tasks: int, *, shots: int, query: int, seed: int) -> list[Task]:
    rng = np.random.default_rng(seed)

    def rows(n: int) -> np.ndarray:
        cat = np.stack([rng.integers(1, s, n) for s in SIZES], 1)
        genres = np.zeros((n, CONFIG.bags[0][1]), dtype=np.int64)
        genres[:, :2] = rng.integers(1, 19, (n, 2))
        return np.concatenate([cat, genres], 1).astype(np.int64)

    return [
        Task(
            user_id=u,
            support_x=rows(shots),
            support_y=rng.integers(1, 6, shots).astype(np.float32),
            support_items=np.zeros(shots, np.int64),
            query_x=rows(query),
            query_y=rng.integers(1, 6, query).astype(np.float32),
            query_items=np.zeros(query, np.int64),
        )
        for u in range(n_tasks)
    ]


def project_step(model: MeLU, batch, inner: InnerLoop) -> None:
    model.zero_grad(set_to_none=True)
    meta_loss(model, batch, inner=inner).backward()


def loop_step(model: MeLU, tasks: list[tuple[torch.Tensor, ...]], inner: InnerLoop) -> None:
    """Per-task reference: adapt each task alone, backpropagate its share of the meta-loss."""
    model.zero_grad(set_to_none=True)
    n_query = sum(len(t[3]) for t in tasks)
    for sx, sy, qx, qy in tasks:
        params = dict(model.decision.named_parameters())
        h_s = model.embed(sx)  # (S, D)
        for _ in range(inner.steps):
            pred = torch.func.functional_call(model.decision, params, (h_s,))  # (S,)
            loss = ((pred - sy) ** 2).mean()
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            params = {k: p - inner.lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
        pred = torch.func.functional_call(model.decision, params, (model.embed(qx),))  # (Q,)
        (((pred - qy) ** 2).sum() / n_query).backward()


def grads(model: MeLU) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def once(fn, sync) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def interleaved(project, loop, rounds: int, sync) -> tuple[list[float], list[float]]:
    """Time both sides alternately, ``rounds`` times each (after one warm-up each).

    The machine is shared: alternating puts both sides under the same background load, and the
    per-round ratios (not one side's minutes-apart median) give the speed-up.
    """
    project()
    loop()
    project_times, loop_times = [], []
    for _ in range(rounds):
        project_times.append(once(project, sync))
        loop_times.append(once(loop, sync))
    return project_times, loop_times


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=256)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--query", type=int, default=10)
    parser.add_argument("--inner-steps", type=int, default=5)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--repeats", type=int, default=7, help="Interleaved timing rounds (median ratio)."
    )
    parser.add_argument(
        "--loop-tasks",
        type=int,
        default=None,
        help="Tasks timed in the loop (default: all; its time scales linearly).",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for both sides (default: 1 on CPU, where the shared 2-core machine "
        "is oversubscribed and spinning threads make timings meaningless; torch's own on CUDA).",
    )
    return parser.parse_args()


def choose_device(args: argparse.Namespace) -> torch.device:
    """The device asked for (``auto``: CUDA when present), with the torch threads set."""
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    threads = args.threads or (1 if device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    return device


def compare_gradients(model: MeLU, batch, loop_data, inner: InnerLoop) -> dict[str, object]:
    """Both sides' meta-gradients on the whole batch: do they agree, and how closely."""
    project_step(model, batch, inner)
    g_project = grads(model)
    loop_step(model, loop_data, inner)
    g_loop = grads(model)
    agree = set(g_project) == set(g_loop) and all(
        torch.allclose(g_project[k], g_loop[k], rtol=1e-3, atol=1e-5) for k in g_project
    )
    return {
        "gradients_agree": agree,
        "grad_max_abs_diff": max(float((g_project[k] - g_loop[k]).abs().max()) for k in g_project),
        "grad_max_abs": max(float(g_loop[k].abs().max()) for k in g_loop),
    }


def throughput(
    model: MeLU, batch, loop_data, inner: InnerLoop, args: argparse.Namespace, sync
) -> dict[str, object]:
    """Time both sides interleaved; the loop on ``--loop-tasks`` tasks, scaled to all."""
    n_loop = min(args.loop_tasks or args.tasks, args.tasks)
    loop_subset = loop_data[:n_loop]
    project_times, loop_times = interleaved(
        lambda: project_step(model, batch, inner),
        lambda: loop_step(model, loop_subset, inner),
        args.repeats,
        sync,
    )
    scale = args.tasks / n_loop  # the loop's time is linear in its tasks
    ratios = [lt * scale / pt for pt, lt in zip(project_times, loop_times, strict=True)]
    project_s = statistics.median(project_times)
    loop_s_full = statistics.median(loop_times) * scale
    return {
        "project": {"seconds_per_step": project_s, "tasks_per_s": args.tasks / project_s},
        "loop": {
            "seconds_per_step": loop_s_full,
            "tasks_per_s": args.tasks / loop_s_full,
            "timed_tasks": n_loop,
        },
        "speedup": statistics.median(ratios),
        "speedup_per_round": ratios,
    }


def report(result: dict) -> None:
    """Print the table, then the JSON object."""
    project, loop = result["project"], result["loop"]
    print(f"{'implementation':<16}{'s/step':>12}{'tasks/s':>14}")
    print(
        f"{'project (vmap)':<16}{project['seconds_per_step']:>12.4f}{project['tasks_per_s']:>14.1f}"
    )
    print(f"{'per-task loop':<16}{loop['seconds_per_step']:>12.4f}{loop['tasks_per_s']:>14.1f}")
    print(
        f"speedup {result['speedup']:.1f}x, gradients agree: {result['gradients_agree']} "
        f"(max |diff| {result['grad_max_abs_diff']:.2e})"
    )
    print(json.dumps(result))


def main() -> None:
    args = parse_args()
    device = choose_device(args)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    inner = InnerLoop(steps=args.inner_steps, lr=0.01)
    torch.manual_seed(0)
    model = MeLU(CONFIG).to(device)
    tasks = make_tasks(args.tasks, shots=args.shots, query=args.query, seed=0)
    batch = collate(tasks).to(device)
    loop_data = [
        tuple(
            torch.as_tensor(a, device=device)
            for a in (t.support_x, t.support_y, t.query_x, t.query_y)
        )
        for t in tasks
    ]
    gradients = compare_gradients(model, batch, loop_data, inner)  # 1. the gradients agree
    timings = throughput(model, batch, loop_data, inner, args, sync)  # 2. throughput
    result = {
        "benchmark": "meta_training_throughput",
        "algorithm": "maml (second order)",
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "tasks_per_batch": args.tasks,
        "shots": args.shots,
        "query": args.query,
        "inner_steps": args.inner_steps,
        "model": "8 fields x 32-d embeddings -> 64 -> 64 -> 1",
        **gradients,
        **timings,
        "rounds": args.repeats,
        "target_speedup": 100.0 if device.type == "cuda" else 8.0,
    }
    result["target_met"] = bool(
        result["gradients_agree"] and result["speedup"] >= result["target_speedup"]
    )
    report(result)


if __name__ == "__main__":
    main()
