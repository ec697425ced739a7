"""Ranks without a process group: the split of a meta-batch, the environment, one-process no-ops."""

from __future__ import annotations

import itertools

import pytest
import torch
from metarec.errors import ConfigError
from metarec.learning.algorithms import Algorithm, mean_counts
from metarec.learning.model import MeLU, ModelConfig
from metarec.learning.tasks import TaskBatch
from metarec.training.distributed import Ranks, is_main_process, part_bounds


@pytest.mark.parametrize("n", [2, 3, 7, 8, 31, 32, 33, 8192])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_parts_are_disjoint_cover_the_batch_in_order_and_differ_by_at_most_one(n, world):
    if n < world:
        return
    items = list(range(n))
    parts = [Ranks(rank=r, world_size=world).part_of(items) for r in range(world)]
    assert [i for part in parts for i in part] == items  # disjoint, complete, in rank order
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    bounds = [part_bounds(n, rank=r, world_size=world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


def test_a_batch_smaller_than_the_world_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="every process needs at least one task") as info:
        Ranks(rank=0, world_size=4).part_of([1, 2, 3])
    assert "meta_batch_size" in str(info.value)


def test_ranks_come_from_torchrun_environment_and_cuda_becomes_the_local_gpu():
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}
    ranks = Ranks.from_environment(torch.device("cuda"), environ=env)
    assert (ranks.rank, ranks.world_size, ranks.local_rank) == (5, 8, 1)
    assert ranks.device == torch.device("cuda", 1)
    assert ranks.distributed and not ranks.is_main
    assert Ranks.from_environment(torch.device("cpu"), environ=env).device.type == "cpu"
    assert not is_main_process(env)
    single = Ranks.from_environment(torch.device("cpu"), environ={})
    assert (single.rank, single.world_size, single.is_main, single.distributed) == (
        0,
        1,
        True,
        False,
    )
    assert is_main_process({})


def test_one_process_does_everything_itself(tmp_path):
    ranks = Ranks()
    assert ranks.gradient_sync(Algorithm.MAML) is None
    assert ranks.from_main(lambda: 2.5) == 2.5
    assert ranks.bytes_from_main(b"card") == b"card"
    path = tmp_path / "checkpoint.safetensors"
    with ranks.file_from_main(path) as seen:
        assert seen == path
    ranks.barrier()
    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    ranks.broadcast_weights(model)
    assert torch.equal(model.weight, before)


def _batch(query_lengths: list[int], support_lengths: list[int]) -> TaskBatch:
    t, s, q = len(query_lengths), max(support_lengths), max(query_lengths)
    smask = torch.tensor([[1.0] * n + [0.0] * (s - n) for n in support_lengths])
    qmask = torch.tensor([[1.0] * n + [0.0] * (q - n) for n in query_lengths])
    return TaskBatch(
        support_x=torch.zeros(t, s, 2),
        support_y=torch.zeros(t, s),
        support_mask=smask,
        query_x=torch.zeros(t, q, 2),
        query_y=torch.zeros(t, q),
        query_mask=qmask,
    )


def test_mean_counts_weigh_a_part_by_what_its_mean_is_over():
    model = MeLU(ModelConfig(field_names=("a", "b"), field_sizes=(3, 3), embedding_dim=2))
    batch = _batch(query_lengths=[2, 5], support_lengths=[1, 3])
    maml = mean_counts(model, batch, algorithm=Algorithm.MAML)
    assert maml.loss == 7 and set(maml.params.values()) == {7}
    reptile = mean_counts(model, batch, algorithm=Algorithm.REPTILE)
    assert reptile.loss == 11  # support + query ratings
    assert any(n.startswith("decision.") for n in reptile.params)
    for name, count in reptile.params.items():
        assert count == (2 if name.startswith("decision.") else 11), name
