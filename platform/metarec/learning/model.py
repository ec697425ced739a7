"""MeLU-style rating regressor: input embeddings (the outer loop) → MLP decision layers.

Every example is one float row (see :class:`ModelConfig`): one code per categorical field, then
each bag's codes padded with 0, then the dense (numeric and vector) columns. Code 0 means
"unknown / padding" in every vocabulary and its embedding row is fixed at zero, so unseen values
and padding contribute nothing. A bag is the mean of its members' embeddings; a dense field is a
linear projection to the embedding width. Only the decision layers (``decision.*``) are adapted
per task; the embeddings and projections learn in the outer loop.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from metarec.learning.scoring import Linear, score


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`MeLU` (everything needed to rebuild it).

    Attributes:
        field_names: Categorical fields, in column order (e.g. ``gender``, ``item_id``).
        field_sizes: Vocabulary size of each field, code 0 (unknown) included.
        bags: ``(vocabulary size with padding, width)`` of each bag field (e.g. genres), whose
            codes follow the categorical codes.
        dense_widths: Columns of each dense field (numeric: 1, vector: its length), last.
        embedding_dim: Width of every field embedding.
        hidden: Widths of the hidden decision layers.
        output_bias: Initial bias of the output unit (e.g. the mean training rating).
        meta_sgd: Learn one inner learning rate per decision parameter element (Meta-SGD).
        inner_lr_init: Initial value of the Meta-SGD rates.
        bias_fields: Fields (e.g. ``item_id``) with a scalar bias added to the output, learnt
            in the outer loop only (a regularised item bias beside the MLP).
    """

    field_names: tuple[str, ...]
    field_sizes: tuple[int, ...]
    bags: tuple[tuple[int, int], ...] = ()
    dense_widths: tuple[int, ...] = ()
    embedding_dim: int = 32
    hidden: tuple[int, ...] = (64, 64)
    output_bias: float = 3.5
    meta_sgd: bool = False
    inner_lr_init: float = 0.01
    bias_fields: tuple[str, ...] = ()

    @property
    def n_fields(self) -> int:
        """Embedded fields: categorical, bags and dense fields."""
        return len(self.field_names) + len(self.bags) + len(self.dense_widths)

    @property
    def input_width(self) -> int:
        """Columns of one encoded example row."""
        bag_width = sum(width for _, width in self.bags)
        return len(self.field_names) + bag_width + sum(self.dense_widths)

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (lists instead of tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ModelConfig:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        n_genres, max_genres = values.pop("n_genres", None), values.pop("max_genres", None)
        if n_genres:  # a legacy card: genres were the one bag
            values["bags"] = [(n_genres, max_genres)]
        for key in ("field_names", "field_sizes", "hidden", "bias_fields", "dense_widths"):
            if key in values:
                values[key] = tuple(values[key])  # type: ignore[arg-type]
        values["bags"] = tuple(tuple(bag) for bag in values.get("bags", ()))  # type: ignore[attr-defined]
        return cls(**values)  # type: ignore[arg-type]


class DecisionLayers(nn.Module):
    """The per-task adapted part: an MLP from the concatenated embeddings to one rating.

    The forward pass itself is :mod:`metarec.learning.scoring` (a pure function of the layers'
    parameters); this module owns the parameters and their names (``hidden.0.weight`` ...
    ``out.bias``), and :meth:`layers` / :meth:`named` translate between the two.
    """

    def __init__(self, in_features: int, hidden: tuple[int, ...], output_bias: float) -> None:
        super().__init__()
        widths = (in_features, *hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.out = nn.Linear(widths[-1], 1)
        nn.init.constant_(self.out.bias, output_bias)
        self.layer_names = (*(f"hidden.{i}" for i in range(len(hidden))), "out")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Predict ratings from embedded features ``h`` of shape (..., D); returns (...)."""
        return self.run(dict(self.named_parameters()), h)

    def run(self, params: Mapping[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with the given parameters (``hidden.0.weight`` ... ``out.bias``).

        A pure function of ``params`` and ``h``: what ``torch.func.functional_call`` computes,
        without swapping the module's parameters in and out on every call (the inner loop
        calls it once per step).

        Args:
            params: Every parameter of the module, by name.
            h: Embedded features (..., D).

        Returns:
            Predictions (...).
        """
        return score(self.layers(params), h)

    def layers(self, params: Mapping[str, torch.Tensor]) -> list[Linear]:
        """The linear layers' ``(weight, bias)`` in order, the output unit last.

        Args:
            params: Parameters keyed as in this module, with or without a leading task axis.

        Returns:
            One pair per layer, for :mod:`metarec.learning.scoring`.
        """
        return [(params[f"{name}.weight"], params[f"{name}.bias"]) for name in self.layer_names]

    def named(self, layers: Sequence[Linear]) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`layers`: the parameters of the first ``len(layers)`` layers, by name.

        Args:
            layers: ``(weight, bias)`` of the first layers in order (all of them, or a prefix).

        Returns:
            ``{"hidden.0.weight": ..., "hidden.0.bias": ..., ...}``.
        """
        if len(layers) > len(self.layer_names):
            n = len(self.layer_names)
            raise ValueError(
                f"{len(layers)} layers given, the MLP has {n}: pass at most {n} (weight, bias)"
            )
        params: dict[str, torch.Tensor] = {}
        for name, (weight, bias) in zip(self.layer_names, layers, strict=False):
            params[f"{name}.weight"] = weight
            params[f"{name}.bias"] = bias
        return params


class MeLU(nn.Module):
    """Embeddings of user and item attributes → MLP → rating."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embedding_dim
        self.fields = nn.ModuleList(nn.Embedding(n, dim, padding_idx=0) for n in config.field_sizes)
        self.bags = nn.ModuleList(nn.Embedding(n, dim, padding_idx=0) for n, _ in config.bags)
        self.dense = nn.ModuleList(nn.Linear(width, dim) for width in config.dense_widths)
        self.register_load_state_dict_pre_hook(_legacy_genres)
        self.decision = DecisionLayers(config.n_fields * dim, config.hidden, config.output_bias)
        self.biases = nn.ModuleDict()
        for name in config.bias_fields:
            size = config.field_sizes[config.field_names.index(name)]
            self.biases[name] = nn.Embedding(size, 1, padding_idx=0)
            nn.init.zeros_(self.biases[name].weight)
        if config.meta_sgd:
            self.inner_lrs = nn.ParameterDict(
                {
                    _lr_key(name): nn.Parameter(torch.full_like(p, config.inner_lr_init))
                    for name, p in self.decision.named_parameters()
                }
            )
        else:
            self.inner_lrs = None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embed encoded rows ``x`` of shape (..., input_width) into (..., n_fields * dim)."""
        n_cat = len(self.config.field_names)
        codes = x[..., : n_cat + sum(w for _, w in self.config.bags)].long()  # (..., C)
        parts = [emb(codes[..., i]) for i, emb in enumerate(self.fields)]  # n_cat × (..., E)
        start = n_cat
        for emb, (_, width) in zip(self.bags, self.config.bags, strict=True):
            members = codes[..., start : start + width]  # (..., G)
            count = (members > 0).sum(-1, keepdim=True).clamp(min=1)  # (..., 1)
            parts.append(emb(members).sum(-2) / count)  # (..., E) mean, padding rows are zero
            start += width
        for project, width in zip(self.dense, self.config.dense_widths, strict=True):
            parts.append(project(x[..., start : start + width]))  # (..., E)
            start += width
        return torch.cat(parts, dim=-1)  # (..., F*E)

    def offset(self, x: torch.Tensor) -> torch.Tensor:
        """The outer-loop bias terms of rows ``x`` (..., input_width) → (...); 0 without any."""
        out = torch.zeros(x.shape[:-1], device=x.device, dtype=self.decision.out.weight.dtype)
        for name, emb in self.biases.items():
            column = self.config.field_names.index(name)
            out = out + emb(x[..., column].long()).squeeze(-1)  # (...)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict ratings for encoded rows ``x`` (..., input_width) → (...)."""
        return self.decision(self.embed(x)) + self.offset(x)

    def decision_params(self) -> dict[str, torch.Tensor]:
        """The adapted parameters, keyed as in ``self.decision`` (no prefix)."""
        return dict(self.decision.named_parameters())

    def inner_lr(self) -> dict[str, torch.Tensor] | None:
        """Meta-SGD per-element learning rates keyed like :meth:`decision_params`, or None."""
        if self.inner_lrs is None:
            return None
        return {name: self.inner_lrs[_lr_key(name)] for name, _ in self.decision.named_parameters()}


def _legacy_genres(_module: nn.Module, state: dict, prefix: str, *_: object) -> None:
    """Rename a legacy card's ``genres.weight`` (the one bag) to ``bags.0.weight``."""
    legacy = f"{prefix}genres.weight"
    if legacy in state:
        state[f"{prefix}bags.0.weight"] = state.pop(legacy)


def _lr_key(name: str) -> str:
    return name.replace(".", "__")
