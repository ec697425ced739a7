"""A meta-learned catalogue ranker: a two-tower softmax model whose user vector adapts per user.

Items are vectors ``v_i`` with a bias ``b_i``, built from item attributes (item id when it was
seen in training, release bucket, genres): a new item still gets a vector from its attributes.
A user's score of every item is ``s = u · v_i + b_i``; ``softmax(s)`` over the catalogue is the
probability that the user takes the item up next.

A new user's vector starts at a prior ``u₀`` (embeddings of the user's attributes plus a support
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

    Attributes:
        user_field_sizes: Vocabulary size of each user attribute field (code 0 = unknown).
        item_field_sizes: Vocabulary size of each categorical item field (item id, release
            bucket, ...; code 0 = unknown).
        n_genres: Genre vocabulary size with padding code 0; 0 disables genres.
        max_genres: Genre codes after the categorical item codes in an item row.
        dim: Width of user and item vectors.
        support_encoder: Add the learnt map of the support items' mean vector to the prior.
        inner_lr_init: Initial per-dimension inner step size.
    """

    user_field_sizes: tuple[int, ...]
    item_field_sizes: tuple[int, ...]
    n_genres: int
    max_genres: int
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
        for key in ("user_field_sizes", "item_field_sizes"):
            values[key] = tuple(values[key])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


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
        self.genres = nn.Embedding(max(config.n_genres, 1), dim, padding_idx=0)
        self.genre_bias = nn.Embedding(max(config.n_genres, 1), 1, padding_idx=0)
        self.encoder = nn.Linear(dim, dim, bias=False)
        self.log_inner_lr = nn.Parameter(torch.full((dim,), float(config.inner_lr_init)).log())
        for emb in [*self.user_fields, *self.item_fields, self.genres]:
            nn.init.normal_(emb.weight, std=0.05)
            emb.weight.data[0].zero_()
        for emb in [*self.item_biases, self.genre_bias]:
            nn.init.zeros_(emb.weight)
        nn.init.zeros_(self.encoder.weight)
        if not config.support_encoder:
            self.encoder.weight.requires_grad_(False)

    # -- towers ---------------------------------------------------------------------------

    def items(self, item_codes: torch.Tensor) -> ItemTower:
        """Vectors and biases of items from their codes (I, n_item_fields + max_genres)."""
        n_cat = len(self.config.item_field_sizes)
        v = sum(emb(item_codes[:, i]) for i, emb in enumerate(self.item_fields))  # (I, D)
        b = sum(emb(item_codes[:, i]).squeeze(-1) for i, emb in enumerate(self.item_biases))
        codes = item_codes[:, n_cat : n_cat + self.config.max_genres]  # (I, G)
        count = (codes > 0).sum(-1, keepdim=True).clamp(min=1)  # (I, 1)
        v = v + self.genres(codes).sum(-2) / count  # (I, D) mean of the item's genres
        b = b + self.genre_bias(codes).squeeze(-1).sum(-1) / count.squeeze(-1)  # (I,)
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
            user_codes: Attribute codes (T, n_user_fields); zeros for an anonymous user.
            tower: The item tower.
            support: Item indices of the support sets (T, S), padding anywhere (weight 0).
            weights: Weight of each support item (T, S); 0 for padding.
        """
        u = torch.zeros(
            user_codes.shape[0], self.config.dim, dtype=tower.v.dtype, device=tower.v.device
        )  # (T, D)
        for i, emb in enumerate(self.user_fields):
            u = u + emb(user_codes[:, i])  # (T, D)
        if self.config.support_encoder:
            u = u + self.encoder(support_mean(tower.v, support, weights))  # (T, D)
        return u

    def inner_lr(self) -> torch.Tensor:
        """Per-dimension inner step sizes (D,), positive."""
        return self.log_inner_lr.exp()


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
        item_codes: Item rows (I, n_item_fields + max_genres) (ignored when ``tower`` is given).
        user_codes: User attribute codes (T, n_user_fields).
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
