"""A meta-learned catalogue ranker: a two-tower softmax model whose user vector adapts per user.

Items are vectors ``v_i`` with a bias ``b_i``, built from item attributes (item id when it was
seen in training, categorical attributes, bags such as genres, and a linear map of the dense
ones, such as a text embedding): a new item still gets a vector from its attributes.
A user's score of every item is ``s = u · v_i + b_i``; ``softmax(s)`` over the catalogue is the
probability that the user takes the item up next.

A new user's vector starts at a prior ``u₀`` (embeddings of the user's attributes, a linear map of
their dense ones, plus a support
encoder: a learnt linear map of the rating-weighted mean of the support items' vectors), then
takes ``steps`` gradient steps on the support set's softmax cross-entropy with learnt
per-dimension step sizes (Meta-SGD). The inner gradient has a closed form,

    ∇_u CE = Σ_i p_i v_i − Σ_j w_j v_j / Σ_j w_j        (p = softmax(s), j over the support),

so the inner loop of every user in a batch is two matrix products per step, with no per-task
autograd call; the outer loop differentiates through it (second order) or treats the inner
gradients as constants (first order). Tests compare it with a per-task ``torch.autograd`` loop.

Everything here is tensors in, tensors out (torch only): the encoding of features into codes,
the training loop and the evaluation live in :mod:`metarec.training`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

EXCLUDED = -1e9  # additive logit of items outside the ranked set (finite: no NaN gradients)


@dataclass(frozen=True)
class RankerConfig:
    """Architecture of :class:`Ranker` (everything needed to rebuild it).

    A user row is its categorical codes, then each bag's codes, then its dense columns; an item
    row likewise.

    Attributes:
        user_field_sizes: Vocabulary size of each categorical user field (code 0 = unknown).
        item_field_sizes: Vocabulary size of each categorical item field (item id, release
            bucket, ...; code 0 = unknown).
        item_bags: ``(vocabulary size with padding, width)`` of each item bag (genres, tags).
        user_bags: The same for user bags.
        item_dense_width: Dense columns at the end of an item row (numeric and vectors).
        user_dense_width: Dense columns at the end of a user row.
        dim: Width of user and item vectors.
        support_encoder: Add the learnt map of the support items' mean vector to the prior.
        inner_lr_init: Initial per-dimension inner step size.
    """

    user_field_sizes: tuple[int, ...]
    item_field_sizes: tuple[int, ...]
    item_bags: tuple[tuple[int, int], ...] = ()
    user_bags: tuple[tuple[int, int], ...] = ()
    item_dense_width: int = 0
    user_dense_width: int = 0
    dim: int = 64
    support_encoder: bool = True
    inner_lr_init: float = 0.5

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (lists instead of tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RankerConfig:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        if "n_genres" in values:  # a legacy card: genres were the one item bag, always built
            n_genres, max_genres = values.pop("n_genres"), values.pop("max_genres")
            values["item_bags"] = [(max(int(n_genres), 1), max_genres)]  # type: ignore[call-overload]
        for key in ("user_field_sizes", "item_field_sizes"):
            values[key] = tuple(values[key])  # type: ignore[arg-type]
        for key in ("item_bags", "user_bags"):
            values[key] = tuple(tuple(bag) for bag in values.get(key, ()))  # type: ignore[attr-defined]
        return cls(**values)  # type: ignore[arg-type]

    @property
    def item_coded_width(self) -> int:
        """Code columns of an item row (categorical and bags)."""
        return len(self.item_field_sizes) + sum(width for _, width in self.item_bags)

    @property
    def user_coded_width(self) -> int:
        """Code columns of a user row (categorical and bags)."""
        return len(self.user_field_sizes) + sum(width for _, width in self.user_bags)


@dataclass(frozen=True)
class ItemTower:
    """Every catalogue item's vector and bias (computed once per batch or per item matrix)."""

    v: torch.Tensor  # (I, D)
    b: torch.Tensor  # (I,)


class Ranker(nn.Module):
    """Item tower, user prior and support encoder; the user vector is adapted per user."""

    def __init__(self, config: RankerConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.user_fields = nn.ModuleList(
            nn.Embedding(n, dim, padding_idx=0) for n in config.user_field_sizes
        )
        self.item_fields = nn.ModuleList(
            nn.Embedding(n, dim, padding_idx=0) for n in config.item_field_sizes
        )
        self.item_biases = nn.ModuleList(
            nn.Embedding(n, 1, padding_idx=0) for n in config.item_field_sizes
        )
        self.item_bags = nn.ModuleList(
            nn.Embedding(n, dim, padding_idx=0) for n, _ in config.item_bags
        )
        self.item_bag_biases = nn.ModuleList(
            nn.Embedding(n, 1, padding_idx=0) for n, _ in config.item_bags
        )
        self.user_bags = nn.ModuleList(
            nn.Embedding(n, dim, padding_idx=0) for n, _ in config.user_bags
        )
        self.encoder = nn.Linear(dim, dim, bias=False)
        self.log_inner_lr = nn.Parameter(torch.full((dim,), float(config.inner_lr_init)).log())
        for emb in [*self.user_fields, *self.item_fields, *self.item_bags, *self.user_bags]:
            nn.init.normal_(emb.weight, std=0.05)
            emb.weight.data[0].zero_()
        for emb in [*self.item_biases, *self.item_bag_biases]:
            nn.init.zeros_(emb.weight)
        nn.init.zeros_(self.encoder.weight)
        if not config.support_encoder:
            self.encoder.weight.requires_grad_(False)
        self.item_dense = _projection(config.item_dense_width, dim)
        self.item_dense_bias = _projection(config.item_dense_width, 1, zero=True)
        self.user_dense = _projection(config.user_dense_width, dim)
        self.register_load_state_dict_pre_hook(_legacy_genres)

    # -- towers ---------------------------------------------------------------------------

    def items(self, item_codes: torch.Tensor) -> ItemTower:
        """Vectors and biases of items from their rows (I, item row width)."""
        config = self.config
        codes = item_codes[:, : config.item_coded_width].long()  # (I, C)
        v = torch.zeros(
            len(item_codes), config.dim, dtype=self.encoder.weight.dtype, device=item_codes.device
        )  # (I, D)
        b = torch.zeros(len(item_codes), dtype=v.dtype, device=v.device)  # (I,)
        for i, (emb, bias) in enumerate(zip(self.item_fields, self.item_biases, strict=True)):
            v = v + emb(codes[:, i])
            b = b + bias(codes[:, i]).squeeze(-1)
        start = len(config.item_field_sizes)
        for emb, bias, (_, width) in zip(
            self.item_bags, self.item_bag_biases, config.item_bags, strict=True
        ):
            members = codes[:, start : start + width]  # (I, G)
            count = (members > 0).sum(-1, keepdim=True).clamp(min=1)  # (I, 1)
            v = v + emb(members).sum(-2) / count  # (I, D) mean of the bag's members
            b = b + bias(members).squeeze(-1).sum(-1) / count.squeeze(-1)  # (I,)
            start += width
        if self.item_dense is not None and self.item_dense_bias is not None:
            dense = item_codes[:, start : start + config.item_dense_width].to(v.dtype)
            v = v + self.item_dense(dense)  # (I, D)
            b = b + self.item_dense_bias(dense).squeeze(-1)  # (I,)
        return ItemTower(v=v, b=b)

    def prior(
        self,
        user_codes: torch.Tensor,
        tower: ItemTower,
        support: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """Starting user vectors (T, D) from attributes and the support set.

        Args:
            user_codes: User rows (T, user row width); zeros for an anonymous user.
            tower: The item tower.
            support: Item indices of the support sets (T, S), padding anywhere (weight 0).
            weights: Weight of each support item (T, S); 0 for padding.
        """
        u = torch.zeros(
            user_codes.shape[0], self.config.dim, dtype=tower.v.dtype, device=tower.v.device
        )  # (T, D)
        codes = user_codes[:, : self.config.user_coded_width].long()  # (T, C)
        for i, emb in enumerate(self.user_fields):
            u = u + emb(codes[:, i])  # (T, D)
        start = len(self.config.user_field_sizes)
        for emb, (_, width) in zip(self.user_bags, self.config.user_bags, strict=True):
            members = codes[:, start : start + width]  # (T, G)
            count = (members > 0).sum(-1, keepdim=True).clamp(min=1)  # (T, 1)
            u = u + emb(members).sum(-2) / count  # (T, D)
            start += width
        if self.user_dense is not None:
            dense = user_codes[:, start : start + self.config.user_dense_width].to(u.dtype)
            u = u + self.user_dense(dense)  # (T, D)
        if self.config.support_encoder:
            u = u + self.encoder(support_mean(tower.v, support, weights))  # (T, D)
        return u

    def inner_lr(self) -> torch.Tensor:
        """Per-dimension inner step sizes (D,), positive."""
        return self.log_inner_lr.exp()


def _projection(width: int, out: int, *, zero: bool = False) -> nn.Linear | None:
    """A bias-free linear map of ``width`` dense columns (None when there are none)."""
    if width == 0:
        return None
    layer = nn.Linear(width, out, bias=False)
    if zero:
        nn.init.zeros_(layer.weight)
    return layer


def _legacy_genres(_module: nn.Module, state: dict, prefix: str, *_: object) -> None:
    """Rename a legacy card's genre embeddings (the one item bag) to ``item_bags.0``."""
    for old, new in (("genres", "item_bags.0"), ("genre_bias", "item_bag_biases.0")):
        if f"{prefix}{old}.weight" in state:
            state[f"{prefix}{new}.weight"] = state.pop(f"{prefix}{old}.weight")


def support_mean(v: torch.Tensor, support: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of the support items' vectors, (T, D); zeros for an empty support set."""
    total = weights.sum(-1, keepdim=True).clamp(min=1e-6)  # (T, 1)
    return torch.einsum("ts,tsd->td", weights, v[support]) / total  # (T, D)


def logits(u: torch.Tensor, tower: ItemTower, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Scores of every item for every user, (T, I); ``allowed`` (T, I) or (I,) bool masks."""
    s = torch.addmm(tower.b.unsqueeze(0), u, tower.v.T)  # (T, I)
    if allowed is not None:
        s = s.masked_fill(~allowed, EXCLUDED)
    return s


def inner_gradient(
    u: torch.Tensor,
    tower: ItemTower,
    support: torch.Tensor,
    weights: torch.Tensor,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gradient of each user's weighted support cross-entropy with respect to u, (T, D).

    The loss of user t is ``−Σ_j w_j log softmax(s_t)[support_j] / Σ_j w_j``.
    """
    p = torch.softmax(logits(u, tower, allowed), dim=-1)  # (T, I)
    return p @ tower.v - support_mean(tower.v, support, weights)  # (T, D)


def adapt_users(
    u0: torch.Tensor,
    tower: ItemTower,
    support: torch.Tensor,
    weights: torch.Tensor,
    *,
    steps: int,
    lr: torch.Tensor | float,
    allowed: torch.Tensor | None = None,
    first_order: bool = False,
) -> torch.Tensor:
    """Adapt every user's vector to its support set: ``steps`` gradient steps from ``u0``.

    Args:
        u0: Starting vectors (T, D).
        tower: Item vectors and biases.
        support: Support item indices (T, S).
        weights: Support weights (T, S), 0 for padding; a user with no weight stays at u0.
        steps: Gradient steps.
        lr: Step size, scalar or per dimension (D,).
        allowed: Items of the softmax (T, I) or (I,) bool; None: the whole catalogue.
        first_order: Treat the inner gradients as constants.

    Returns:
        Adapted vectors (T, D).
    """
    has_support = (weights.sum(-1, keepdim=True) > 0).to(u0.dtype)  # (T, 1)
    u = u0
    for _ in range(steps):
        g = inner_gradient(u, tower, support, weights, allowed)  # (T, D)
        if first_order:
            g = g.detach()
        u = u - lr * g * has_support
    return u


def query_loss(
    s: torch.Tensor, query: torch.Tensor, weights: torch.Tensor, exclude: torch.Tensor
) -> torch.Tensor:
    """Mean over users of the weighted softmax cross-entropy of their query items.

    Args:
        s: Scores (T, I), items outside the ranked set already at ``EXCLUDED``.
        query: Query item indices (T, Q).
        weights: Weight of each query item (T, Q); 0 for padding and items not to predict.
        exclude: Items removed from the softmax (T, I) bool (the support items).
    """
    log_p = torch.log_softmax(s.masked_fill(exclude, EXCLUDED), dim=-1)  # (T, I)
    picked = log_p.gather(1, query)  # (T, Q)
    total = weights.sum(-1)  # (T,)
    per_user = -(picked * weights).sum(-1) / total.clamp(min=1e-6)  # (T,)
    real = (total > 0).to(s.dtype)  # (T,)
    return (per_user * real).sum() / real.sum().clamp(min=1.0)


def exclusion_mask(n_items: int, support: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(T, I) bool: True at each user's support items (padding rows excluded)."""
    mask = torch.zeros(support.shape[0], n_items, dtype=torch.bool, device=support.device)
    return mask.scatter_(1, support, weights > 0)


def adapted_scores(
    model: Ranker,
    item_codes: torch.Tensor,
    user_codes: torch.Tensor,
    support: torch.Tensor,
    weights: torch.Tensor,
    *,
    steps: int,
    lr: torch.Tensor | float | None = None,
    allowed: torch.Tensor | None = None,
    first_order: bool = False,
    tower: ItemTower | None = None,
) -> torch.Tensor:
    """Scores (T, I) of every item after adapting each user to its support set.

    The one forward pass of the ranker: meta-training, evaluation and serving call it. Support
    items are not masked here (callers exclude them from what they rank).

    Args:
        model: The ranker.
        item_codes: Item rows (I, item row width) (ignored when ``tower`` is given).
        user_codes: User rows (T, user row width).
        support: Support item indices (T, S).
        weights: Support weights (T, S), 0 for padding.
        steps: Inner steps.
        lr: Step size; None: the model's learnt per-dimension rates.
        allowed: The softmax's item set, (T, I) or (I,) bool; None: every item.
        first_order: First-order inner loop.
        tower: A precomputed item tower (serving caches it).
    """
    tower = tower if tower is not None else model.items(item_codes)
    u0 = model.prior(user_codes, tower, support, weights)  # (T, D)
    rate = model.inner_lr() if lr is None else lr
    u = adapt_users(
        u0,
        tower,
        support,
        weights,
        steps=steps,
        lr=rate,
        allowed=allowed,
        first_order=first_order,
    )  # (T, D)
    return logits(u, tower)  # (T, I)
