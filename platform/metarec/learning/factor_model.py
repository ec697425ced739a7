"""A meta-learned Bayesian fold-in of a new user into a matrix factorisation.

The rating of item ``i`` by user ``u`` is ``μ + b_i + b_u + q_i · p_u``: global mean, item bias
and item factors ``q_i`` (``F``-d) learnt in the outer loop on meta-train users, and the user's
``θ_u = (b_u, p_u)`` (a ``1 + F`` vector) fitted per user on the support set. The prediction is
linear in ``θ_u``: with the item design row ``z_i = (1, q_i)`` it is ``μ + b_i + z_i · θ_u``.

``θ_u`` has a learnt Gaussian prior: its mean is a base vector plus one embedding per user
attribute (gender, age bucket, occupation: code 0, "unknown", adds nothing), optionally plus a
support-set encoder (an item-specific vector per support rating, weighted by that rating's
residual); its precision ``λ`` is one learnt value per dimension. The inner loop fits ``θ_u`` to

    L(θ) = Σ_s m_s (r_s − μ − b_s − z_s · θ)² + Σ_d λ_d (θ_d − m_d)²

either in closed form (``inner="map"``: the posterior mode, a ``(1+F)``-square ridge solve per
user, exact Bayesian linear regression given the item parameters) or by ``inner_steps`` gradient
steps from the prior mean on ``L / (n + 1)`` with learnt per-dimension rates (``inner="sgd"``,
Meta-SGD; ``torch.func.grad`` + ``vmap`` over users). Both are differentiable: the meta loss is
the query MSE after adaptation, and its gradient flows through the inner loop into the item
parameters, the prior and the rates. Padded support rows (mask 0) contribute exactly nothing.

At prediction (not in the meta-training loss), an optional neighbourhood correction adds the
support ratings' residuals after the fold-in, weighted by the item-item similarity of the learnt
item factors: ``α Σ_s w_is e_s / (Σ_s w_is + c)`` with ``w_is = max(cos(q_i, q_s), 0)^p``
(``neighbour_weight`` α, ``neighbour_count`` c, ``neighbour_power`` p; α = 0 turns it off).
It needs no extra parameters: the similarity comes from the item factors alone.

Options (off by default): ``train_neighbour`` learns α and c and adds the correction inside the
meta loss; ``size_precision`` scales the prior precision by a learnt function of the support
size; ``members > 1`` makes the model a seed ensemble (it holds ``members − 1`` independently
trained copies, and :meth:`FactorModel.predict_tasks` averages all members' predictions).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from metarec.learning.factor_fold_in import fold_in_loss, map_fold_in, sgd_fold_in

__all__ = [
    "FactorConfig",
    "FactorModel",
    "fold_in_loss",
    "map_fold_in",
    "masked_query_loss",
    "meta_loss",
    "sgd_fold_in",
]

INNER_MODES = ("map", "sgd")
LOSSES = ("mse", "mae")


@dataclass(frozen=True)
class FactorConfig:
    """Architecture and inner loop of :class:`FactorModel` (everything needed to rebuild it).

    Attributes:
        field_names: Categorical fields of an encoded row, in column order.
        field_sizes: Vocabulary size of each field, code 0 (unknown) included.
        item_field: The field holding the item id code.
        user_fields: User attribute fields whose embeddings set the prior mean of ``θ_u``.
        n_factors: Item/user factor dimension ``F``.
        global_mean: Initial global mean rating ``μ``.
        inner: ``"map"`` (closed-form posterior mode) or ``"sgd"`` (gradient steps).
        inner_steps: Gradient steps of the ``"sgd"`` inner loop.
        inner_lr_init: Initial per-dimension rate of the ``"sgd"`` inner loop.
        bias_precision_init: Initial prior precision of the user bias (pseudo-ratings).
        factor_precision_init: Initial prior precision of each user factor.
        support_encoder: Add ``Σ_s m_s r̃_s v_s / (n + c)`` (``v``: a learnt vector per item,
            ``r̃``: the rating minus ``μ + b_s``) to the prior mean.
        neighbour_weight: Weight α of the neighbourhood correction at prediction (0: off).
        neighbour_count: Pseudo-count c in its denominator (shrinks it with few neighbours).
        neighbour_power: Exponent p of the clipped cosine similarities.
        train_neighbour: Learn α and c (from ``neighbour_weight``/``neighbour_count``) and add
            the correction inside the meta-training loss too.
        size_precision: Scale the prior precision by a learnt factor of the support size:
            ``exp(g(log2(n + 1)))``, ``g`` piecewise linear with one learnt value (bias, factors)
            per knot ``0 .. size_knots − 1`` (init 0, constant beyond the last knot).
        size_knots: Knots of ``g``.
        members: Models in a seed ensemble: the model itself plus ``members − 1`` independently
            trained copies (``extra_members``) whose predictions :meth:`FactorModel.predict_tasks`
            averages.
    """

    field_names: tuple[str, ...]
    field_sizes: tuple[int, ...]
    item_field: str = "item_id"
    user_fields: tuple[str, ...] = ("gender", "age_bucket", "occupation")
    n_factors: int = 16
    global_mean: float = 3.5
    inner: str = "map"
    inner_steps: int = 5
    inner_lr_init: float = 0.5
    bias_precision_init: float = 3.0
    factor_precision_init: float = 10.0
    support_encoder: bool = False
    neighbour_weight: float = 0.0
    neighbour_count: float = 5.0
    neighbour_power: float = 1.0
    train_neighbour: bool = False
    size_precision: bool = False
    size_knots: int = 7
    members: int = 1

    def __post_init__(self) -> None:
        """Check the layout and the options."""
        if self.members < 1:
            raise ValueError(f"members must be at least 1, got {self.members}")
        if self.inner not in INNER_MODES:
            raise ValueError(f"inner must be one of {INNER_MODES}, got {self.inner!r}")
        if len(self.field_names) != len(self.field_sizes):
            raise ValueError("field_names and field_sizes must have the same length")
        missing = [f for f in (self.item_field, *self.user_fields) if f not in self.field_names]
        if missing:
            raise ValueError(f"fields {missing} are not in the encoded row {self.field_names}")

    @property
    def n_items(self) -> int:
        """Item codes, 0 (unknown) included."""
        return self.field_sizes[self.field_names.index(self.item_field)]

    @property
    def user_dim(self) -> int:
        """Size of a user's adapted vector ``θ_u = (b_u, p_u)``."""
        return 1 + self.n_factors

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (lists instead of tuples)."""
        data = asdict(self)
        for key in ("field_names", "field_sizes", "user_fields"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FactorConfig:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        for key in ("field_names", "field_sizes", "user_fields"):
            if key in values:
                values[key] = tuple(values[key])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


class FactorModel(nn.Module):
    """Item biases and factors (outer loop) plus a learnt prior over each user's ``(b_u, p_u)``."""

    def __init__(self, config: FactorConfig) -> None:
        super().__init__()
        self.config = config
        dim, n_items = config.user_dim, config.n_items
        self.mean = nn.Parameter(torch.tensor(float(config.global_mean)))
        self.item_bias = nn.Embedding(n_items, 1, padding_idx=0)
        self.item_factors = nn.Embedding(n_items, config.n_factors, padding_idx=0)
        nn.init.zeros_(self.item_bias.weight)
        nn.init.normal_(self.item_factors.weight, std=0.1)
        with torch.no_grad():
            self.item_factors.weight[0].zero_()
        self.prior_base = nn.Parameter(torch.zeros(dim))
        self.prior_fields = nn.ModuleList(
            nn.Embedding(config.field_sizes[config.field_names.index(f)], dim, padding_idx=0)
            for f in config.user_fields
        )
        for emb in self.prior_fields:
            nn.init.zeros_(emb.weight)
        precision = [config.bias_precision_init] + [config.factor_precision_init] * (dim - 1)
        self.log_precision = nn.Parameter(torch.log(torch.tensor(precision)))
        self.log_lr = nn.Parameter(torch.full((dim,), math.log(config.inner_lr_init)))
        if config.support_encoder:
            self.support_vectors = nn.Embedding(n_items, dim, padding_idx=0)
            nn.init.zeros_(self.support_vectors.weight)
            self.log_support_count = nn.Parameter(torch.tensor(math.log(3.0)))
        else:
            self.support_vectors = None
        if config.train_neighbour:
            self.log_neighbour = nn.Parameter(
                torch.log(torch.tensor([config.neighbour_weight, config.neighbour_count]))
            )
        if config.size_precision:
            self.size_log_scale = nn.Parameter(torch.zeros(config.size_knots, 2))
        self.extra_members = nn.ModuleList(
            FactorModel(replace(config, members=1)) for _ in range(config.members - 1)
        )

    def _column(self, name: str) -> int:
        return self.config.field_names.index(name)

    def item_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed offset ``μ + b_i`` (...) and design row ``z_i = (1, q_i)`` (..., 1+F)."""
        return self.item_terms_from_codes(x[..., self._column(self.config.item_field)].long())

    def item_terms_from_codes(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`item_terms` from item codes (...) instead of encoded rows."""
        offset = self.mean + self.item_bias(items).squeeze(-1)  # (...)
        q = self.item_factors(items)  # (..., F)
        z = torch.cat([torch.ones_like(q[..., :1]), q], dim=-1)  # (..., 1+F)
        return offset, z

    def prior_mean(
        self,
        user_x: torch.Tensor,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        support_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Prior mean of each task's ``θ_u`` (T, 1+F) from the user's attributes (+ support).

        Args:
            user_x: One encoded row of each task's user (T, W); only its user attributes are
                read.
            support_x: Encoded support rows (T, S, W).
            support_y: Support ratings (T, S).
            support_mask: Support mask (T, S).
        """
        first = user_x  # (T, W)
        mean = self.prior_base.expand(first.shape[0], -1)  # (T, 1+F)
        for name, emb in zip(self.config.user_fields, self.prior_fields, strict=True):
            mean = mean + emb(first[:, self._column(name)].long())  # (T, 1+F)
        if self.support_vectors is not None:
            items = support_x[..., self._column(self.config.item_field)].long()  # (T, S)
            offset, _ = self.item_terms(support_x)  # (T, S)
            resid = (support_y - offset) * support_mask  # (T, S)
            count = support_mask.sum(-1, keepdim=True) + self.log_support_count.exp()  # (T, 1)
            encoded = (resid.unsqueeze(-1) * self.support_vectors(items)).sum(-2)  # (T, 1+F)
            mean = mean + encoded / count  # (T, 1+F)
        return mean

    @property
    def precision(self) -> torch.Tensor:
        """Prior precision ``λ`` per dimension of ``θ_u`` (1+F,)."""
        return self.log_precision.exp()

    def task_precision(self, support_mask: torch.Tensor) -> torch.Tensor:
        """Prior precision per task (T, 1+F); the shared one (1+F,) without size_precision."""
        if not self.config.size_precision:
            return self.precision
        knots = self.config.size_knots
        pos = torch.log2(support_mask.detach().sum(-1) + 1.0).clamp(0.0, knots - 1.0)  # (T,)
        lo = pos.floor().long().clamp(max=knots - 2)  # (T,)
        frac = (pos - lo.to(pos.dtype)).unsqueeze(-1)  # (T, 1)
        g = self.size_log_scale[lo] * (1 - frac) + self.size_log_scale[lo + 1] * frac  # (T, 2)
        scale = torch.cat([g[:, :1], g[:, 1:].expand(-1, self.config.n_factors)], dim=-1)
        return self.precision * scale.exp()  # (T, 1+F)

    @property
    def neighbour_parameters(self) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """``(α, c)`` of the neighbourhood correction (learnt with ``train_neighbour``)."""
        if self.config.train_neighbour:
            alpha, count = self.log_neighbour.exp()
            return alpha, count
        return self.config.neighbour_weight, self.config.neighbour_count

    @property
    def inner_rates(self) -> torch.Tensor:
        """Per-dimension rates of the ``"sgd"`` inner loop (1+F,)."""
        return self.log_lr.exp()

    def adapt(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        support_mask: torch.Tensor,
        *,
        user_x: torch.Tensor | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """Fit every task's ``θ_u`` to its support set; returns (T, 1+F).

        Args:
            support_x: Encoded support rows (T, S, W).
            support_y: Support ratings (T, S).
            support_mask: Support mask (T, S), 1 = real rating.
            user_x: One encoded row per task carrying its user's attributes (T, W); default
                the first support row (pass a query row when a support set may be empty).
            steps: Gradient steps for ``inner="sgd"`` (default: the config's); ignored by
                ``"map"``.
        """
        user_x = support_x[:, 0] if user_x is None else user_x  # (T, W)
        offset, z = self.item_terms(support_x)  # (T, S), (T, S, 1+F)
        target = (support_y - offset) * support_mask  # (T, S) residual to explain
        z = z * support_mask.unsqueeze(-1)  # (T, S, 1+F), padded rows are zero
        prior = self.prior_mean(user_x, support_x, support_y, support_mask)  # (T, 1+F)
        precision = self.task_precision(support_mask)  # (1+F,) or (T, 1+F)
        if self.config.inner == "map":
            return map_fold_in(z, target, prior, precision)
        n_steps = self.config.inner_steps if steps is None else steps
        return sgd_fold_in(
            z, target, support_mask, prior, precision, self.inner_rates, steps=n_steps
        )

    def predict(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Ratings of rows ``x`` (T, N, W) for users ``theta`` (T, 1+F) → (T, N) (unclamped)."""
        offset, z = self.item_terms(x)  # (T, N), (T, N, 1+F)
        return offset + (z * theta.unsqueeze(-2)).sum(-1)  # (T, N)

    def neighbour_correction(
        self,
        theta: torch.Tensor,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        support_mask: torch.Tensor,
        query_x: torch.Tensor,
    ) -> torch.Tensor:
        """The neighbourhood correction of the query ratings (T, Q); zeros when it is off.

        Args:
            theta: Adapted user vectors (T, 1+F).
            support_x: Encoded support rows (T, S, W).
            support_y: Support ratings (T, S).
            support_mask: Support mask (T, S).
            query_x: Encoded query rows (T, Q, W).
        """
        cfg = self.config
        if cfg.neighbour_weight == 0.0 and not cfg.train_neighbour:
            return torch.zeros(query_x.shape[:2], device=query_x.device)
        item = self._column(cfg.item_field)
        resid = (support_y - self.predict(theta, support_x)) * support_mask  # (T, S)
        q_query = F.normalize(self.item_factors(query_x[..., item].long()), dim=-1)  # (T, Q, F)
        q_support = F.normalize(self.item_factors(support_x[..., item].long()), dim=-1)  # (T, S, F)
        sim = (q_query @ q_support.transpose(-1, -2)).clamp(min=0.0)  # (T, Q, S)
        weight = sim.pow(cfg.neighbour_power) * support_mask.unsqueeze(-2)  # (T, Q, S)
        total = (weight @ resid.unsqueeze(-1)).squeeze(-1)  # (T, Q)
        alpha, count = self.neighbour_parameters
        return alpha * total / (weight.sum(-1) + count)

    def predict_member(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        support_mask: torch.Tensor,
        query_x: torch.Tensor,
    ) -> torch.Tensor:
        """This model's own prediction (fold-in + neighbourhood correction) → (T, Q)."""
        return self._fold_in_predict(support_x, support_y, support_mask, query_x, correct=True)

    def predict_tasks(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        support_mask: torch.Tensor,
        query_x: torch.Tensor,
    ) -> torch.Tensor:
        """The served prediction of the query rows (T, Q), unclamped.

        The mean over the ensemble members of :meth:`predict_member`; the user attributes are
        read off the first query row.
        """
        preds = [
            m.predict_member(support_x, support_y, support_mask, query_x)
            for m in (self, *self.extra_members)
        ]
        return torch.stack(preds).mean(0)  # (T, Q)

    def forward(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        support_mask: torch.Tensor,
        query_x: torch.Tensor,
    ) -> torch.Tensor:
        """Adapt to the support sets and predict the query rows → (T, Q).

        The user attributes are read from the first query row (always a real row). With
        ``train_neighbour`` the neighbourhood correction is added (so the meta loss fits it).
        """
        return self._fold_in_predict(
            support_x, support_y, support_mask, query_x, correct=self.config.train_neighbour
        )

    def _fold_in_predict(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        support_mask: torch.Tensor,
        query_x: torch.Tensor,
        *,
        correct: bool,
    ) -> torch.Tensor:
        """Adapt (user attributes from the first query row), predict, add the correction."""
        theta = self.adapt(support_x, support_y, support_mask, user_x=query_x[:, 0])  # (T, 1+F)
        pred = self.predict(theta, query_x)  # (T, Q)
        if correct:
            pred = pred + self.neighbour_correction(
                theta, support_x, support_y, support_mask, query_x
            )
        return pred


def masked_query_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, kind: str = "mse"
) -> torch.Tensor:
    """Mean squared (``"mse"``) or absolute (``"mae"``) error over the real query ratings."""
    diff = pred - target  # (T, Q)
    per_rating = diff**2 if kind == "mse" else diff.abs()  # (T, Q)
    return (per_rating * mask).sum() / mask.sum().clamp(min=1.0)


def meta_loss(
    model: FactorModel,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    support_mask: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    query_mask: torch.Tensor,
    *,
    kind: str = "mse",
) -> torch.Tensor:
    """Query loss (``"mse"`` or ``"mae"``) after adapting every task (differentiable) → ()."""
    if kind not in LOSSES:
        raise ValueError(f"loss kind must be one of {LOSSES}, got {kind!r}")
    pred = model(support_x, support_y, support_mask, query_x)  # (T, Q)
    return masked_query_loss(pred, query_y, query_mask, kind=kind)
