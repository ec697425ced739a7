"""MeLU-style rating regressor: attribute embeddings (the outer loop) → MLP decision layers.

Every example is one row of integer codes (see :class:`ModelConfig`): one code per categorical
field, then up to ``max_genres`` genre codes padded with 0. Code 0 means "unknown / padding" in
every vocabulary and its embedding row is fixed at zero, so unseen values and padding contribute
nothing. Only the decision layers (``decision.*``) are adapted per task; the embeddings learn in
the outer loop.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from metarec.learning.losses import masked_mse

DECISION_PREFIX = "decision."
HEADS = ("mlp", "user")

DualTerms = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`MeLU` (everything needed to rebuild it).

    Attributes:
        field_names: Categorical fields, in column order (e.g. ``gender``, ``item_id``).
        field_sizes: Vocabulary size of each field, code 0 (unknown) included.
        n_genres: Genre vocabulary size, code 0 (padding) included; 0 disables the genre field.
        max_genres: How many genre codes follow the categorical codes in each row.
        embedding_dim: Width of every field embedding.
        hidden: Widths of the hidden decision layers.
        output_bias: Initial bias of the output unit (e.g. the mean training rating).
        meta_sgd: Learn one inner learning rate per decision parameter element (Meta-SGD).
        inner_lr_init: Initial value of the Meta-SGD rates.
        bias_fields: Fields (e.g. ``item_id``) with a scalar bias added to the output, learnt
            in the outer loop only (a regularised item bias beside the MLP).
        head: What adapts per task. ``mlp``: every decision layer (:class:`Decision`).
            ``user``: a per-user offset and a small user vector only (:class:`UserHead`); the
            bias fields then travel as extra columns of the embedding.
        user_dim: Width of the adapted user vector (``user`` head); 0 means the width of the
            last hidden layer.
        offset_prior: Initial prior precision (shrinkage, in pseudo-ratings) of the adapted
            user offset toward its meta-learned start (``user`` head); meta-learnt after.
        vector_prior: The same for the user vector.
        taste_scale: The user vector's projection starts as this multiple of the identity on
            the last hidden layer (``user`` head).
    """

    field_names: tuple[str, ...]
    field_sizes: tuple[int, ...]
    n_genres: int
    max_genres: int
    embedding_dim: int = 32
    hidden: tuple[int, ...] = (64, 64)
    output_bias: float = 3.5
    meta_sgd: bool = False
    inner_lr_init: float = 0.01
    bias_fields: tuple[str, ...] = ()
    head: str = "mlp"
    user_dim: int = 0
    offset_prior: float = 3.0
    vector_prior: float = 1.0
    taste_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; expected one of {HEADS}")
        if self.head == "user" and not self.hidden:
            raise ValueError("the user head needs at least one hidden layer")

    @property
    def n_fields(self) -> int:
        """Embedded fields: the categorical ones plus genres when present."""
        return len(self.field_names) + (1 if self.n_genres else 0)

    @property
    def embedded_width(self) -> int:
        """Width of :meth:`MeLU.embed`'s output (bias columns included for the ``user`` head)."""
        extra = len(self.bias_fields) if self.head == "user" else 0
        return self.n_fields * self.embedding_dim + extra

    @property
    def input_width(self) -> int:
        """Columns of one encoded example row."""
        return len(self.field_names) + self.max_genres

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (lists instead of tuples)."""
        data = asdict(self)
        data["field_names"] = list(self.field_names)
        data["field_sizes"] = list(self.field_sizes)
        data["hidden"] = list(self.hidden)
        data["bias_fields"] = list(self.bias_fields)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ModelConfig:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        for key in ("field_names", "field_sizes", "hidden", "bias_fields"):
            if key in values:
                values[key] = tuple(values[key])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


class Decision(nn.Module):
    """The per-task adapted part: an MLP from the concatenated embeddings to one rating."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], output_bias: float) -> None:
        super().__init__()
        widths = (in_features, *hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.out = nn.Linear(widths[-1], 1)
        nn.init.constant_(self.out.bias, output_bias)

    def forward(
        self,
        h: torch.Tensor,
        *,
        preactivation: bool = False,
        dual: Sequence[DualTerms] | None = None,
        inputs: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Predict ratings from embedded features ``h`` of shape (..., D); returns (...).

        The closed-form inner loop (:mod:`metarec.learning.adaptation`) uses the keywords:

        * ``preactivation``: ``h`` is already the first hidden layer's pre-activation (..., H1);
          the first layer is skipped.
        * ``dual``: one ``(a, b, shift)`` per remaining hidden layer: its output becomes
          ``layer(x) + (x aᵀ + 1) b + shift``, i.e. the layer with weight ``W + bᵀ a`` and bias
          ``b₀ + Σ b`` (a: (N, in), b: (N, out), either None for no history; shift: (..., out)
          or None).
        * ``inputs``: collects each remaining hidden layer's input x (..., in).
        """
        layers = self.hidden[1:] if preactivation else self.hidden
        if preactivation:
            h = torch.relu(h)  # (..., H1)
        for i, layer in enumerate(layers):
            if inputs is not None:
                inputs.append(h)
            z = layer(h)  # (..., H)
            if dual is not None:
                a, b, shift = dual[i]
                if a is not None:
                    z = z + (h @ a.transpose(-1, -2) + 1) @ b  # (..., H)
                if shift is not None:
                    z = z + shift
            h = torch.relu(z)  # (..., H)
        return self.out(h).squeeze(-1)  # (...)

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activation (..., H) of embedded rows ``h`` (..., D)."""
        for layer in self.hidden:
            h = torch.relu(layer(h))  # (..., H)
        return h

    def adapted_names(self) -> tuple[str, ...]:
        """Names of the parameters adapted per task: all of them."""
        return tuple(name for name, _ in self.named_parameters())

    def support_loss(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        params: dict[str, torch.Tensor],
        start: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """The inner-loop loss of one task: masked mean squared error of (S,) predictions."""
        del params, start
        return masked_mse(pred, target, mask)


class UserHead(nn.Module):
    """``base(h) + bias columns + user_offset + user_vec · proj(h)``; only the user part adapts.

    ``h`` is (..., D + n_bias): the field embeddings, then one column per bias field (e.g. the
    item bias). The base MLP, the projection and the biases learn in the outer loop; per task,
    only ``user_offset`` (1,) and ``user_vec`` (user_dim,) move, under the loss of
    :meth:`support_loss`: squared errors plus a Gaussian prior pulling both toward their
    meta-learned starting values, normalised by ``n + λ_offset``. With that normalisation a
    step of rate 0.5 on the offset alone lands exactly on the shrunk estimate
    ``Σ residual / (n + λ_offset)`` (the user + item bias baseline's, with ``λ = user_reg``) and
    stays there, so the head contains that baseline as a special case and few ratings cannot
    over-fit it. The prior precisions are learnt in the outer loop (second-order MAML).
    """

    ADAPTED = ("user_offset", "user_vec")

    def __init__(
        self,
        in_features: int,
        *,
        n_bias: int,
        hidden: tuple[int, ...],
        output_bias: float,
        user_dim: int,
        prior_init: tuple[float, float],
        taste_scale: float,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.n_bias = n_bias
        self.base = Decision(in_features, hidden, output_bias)
        self.proj = nn.Linear(hidden[-1], user_dim, bias=False)
        with torch.no_grad():  # a scaled identity: the user vector starts on the MLP's features
            self.proj.weight.copy_(taste_scale * torch.eye(user_dim, hidden[-1]))
        self.user_offset = nn.Parameter(torch.zeros(1))
        self.user_vec = nn.Parameter(torch.zeros(user_dim))
        self.log_prior = nn.Parameter(torch.tensor(prior_init, dtype=torch.float32).log())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Predict ratings from embedded rows ``h`` (..., D + n_bias) → (...)."""
        features = h[..., : self.in_features]  # (..., D)
        bias = h[..., self.in_features :].sum(-1)  # (...)
        last = self.base.features(features)  # (..., H) the MLP's last hidden activation
        base = self.base.out(last).squeeze(-1)  # (...)
        taste = (self.proj(last) * self.user_vec).sum(-1)  # (...)
        return base + bias + self.user_offset.squeeze(-1) + taste  # (...)

    def adapted_names(self) -> tuple[str, ...]:
        """Names of the parameters adapted per task."""
        return self.ADAPTED

    def support_loss(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        params: dict[str, torch.Tensor],
        start: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """``(Σ mask·err² + λ_o ‖Δoffset‖² + λ_u ‖Δvec‖²) / (n + λ_o)`` for one task (S,)."""
        prior = self.log_prior.exp()  # (2,) precisions: offset, vector
        sse = ((pred - target) ** 2 * mask).sum()  # ()
        penalty = prior[0] * ((params["user_offset"] - start["user_offset"]) ** 2).sum()
        penalty = penalty + prior[1] * ((params["user_vec"] - start["user_vec"]) ** 2).sum()
        return (sse + penalty) / (mask.sum() + prior[0])  # ()


class MeLU(nn.Module):
    """Embeddings of user and item attributes → MLP → rating."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embedding_dim
        self.fields = nn.ModuleList(nn.Embedding(n, dim, padding_idx=0) for n in config.field_sizes)
        self.genres = nn.Embedding(config.n_genres, dim, padding_idx=0) if config.n_genres else None
        width = config.n_fields * dim
        if config.head == "user":
            self.decision: Decision | UserHead = UserHead(
                width,
                n_bias=len(config.bias_fields),
                hidden=config.hidden,
                output_bias=config.output_bias,
                user_dim=config.user_dim or config.hidden[-1],
                prior_init=(config.offset_prior, config.vector_prior),
                taste_scale=config.taste_scale,
            )
        else:
            self.decision = Decision(width, config.hidden, config.output_bias)
        self.biases = nn.ModuleDict()
        for name in config.bias_fields:
            size = config.field_sizes[config.field_names.index(name)]
            self.biases[name] = nn.Embedding(size, 1, padding_idx=0)
            nn.init.zeros_(self.biases[name].weight)
        if config.meta_sgd:
            self.inner_lrs = nn.ParameterDict(
                {
                    _lr_key(name): nn.Parameter(torch.full_like(p, config.inner_lr_init))
                    for name, p in self.decision_params().items()
                }
            )
        else:
            self.inner_lrs = None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embed encoded rows ``x`` of shape (..., input_width) into (..., n_fields * dim)."""
        n_cat = len(self.config.field_names)
        parts = [emb(x[..., i]) for i, emb in enumerate(self.fields)]  # n_cat × (..., E)
        if self.genres is not None:
            codes = x[..., n_cat : n_cat + self.config.max_genres]  # (..., G)
            summed = self.genres(codes).sum(-2)  # (..., E), padding rows are zero
            count = (codes > 0).sum(-1, keepdim=True).clamp(min=1)  # (..., 1)
            parts.append(summed / count)  # (..., E) mean of the item's genres
        if self.config.head == "user":
            for name, emb in self.biases.items():
                parts.append(emb(x[..., self.config.field_names.index(name)]))  # (..., 1)
        return torch.cat(parts, dim=-1)  # (..., embedded_width)

    def offset(self, x: torch.Tensor) -> torch.Tensor:
        """The outer-loop bias terms of rows ``x`` (..., input_width) → (...).

        0 without bias fields, and for the ``user`` head (its biases are embedding columns).
        """
        dtype = self.fields[0].weight.dtype
        out = torch.zeros(x.shape[:-1], device=x.device, dtype=dtype)
        if self.config.head == "user":
            return out
        for name, emb in self.biases.items():
            column = self.config.field_names.index(name)
            out = out + emb(x[..., column]).squeeze(-1)  # (...)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict ratings for encoded rows ``x`` (..., input_width) → (...)."""
        return self.decision(self.embed(x)) + self.offset(x)

    def decision_params(self) -> dict[str, torch.Tensor]:
        """The adapted parameters, keyed as in ``self.decision`` (no prefix)."""
        params = dict(self.decision.named_parameters())
        return {name: params[name] for name in self.decision.adapted_names()}

    def regression_parameters(self) -> list[nn.Parameter]:
        """What plain regression (the non-meta global model) trains.

        Everything but the Meta-SGD rates and, for the ``user`` head, the per-user starting
        values, their prior and the taste projection (a global model has no users: its user
        offset and vector stay 0, so those would only be weight-decayed).
        """
        skip = {id(p) for p in self.inner_lrs.values()} if self.inner_lrs is not None else set()
        if isinstance(self.decision, UserHead):
            skip |= {id(p) for p in self.decision_params().values()}
            skip |= {id(self.decision.log_prior), id(self.decision.proj.weight)}
        return [p for p in self.parameters() if id(p) not in skip]

    def inner_lr(self) -> dict[str, torch.Tensor] | None:
        """Meta-SGD per-element learning rates keyed like :meth:`decision_params`, or None."""
        if self.inner_lrs is None:
            return None
        return {name: self.inner_lrs[_lr_key(name)] for name in self.decision_params()}


def _lr_key(name: str) -> str:
    return name.replace(".", "__")
