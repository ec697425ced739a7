"""Settings and report of the factor fold-in's training, and its architecture for an encoder.

:class:`FactorTrainingConfig` holds the hyper-parameters of
:func:`~metarec.training.factor_training.fit_factor_model` (architecture fields included: they
are recorded flat in the model card's ``factor_model.training_config``);
:func:`factor_config_for` turns them into the :class:`~metarec.learning.factor_model.FactorConfig`
of an encoder's row layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from metarec.learning.factor_model import FactorConfig
from metarec.training.encoding import FeatureEncoder


@dataclass(frozen=True)
class FactorTrainingConfig:
    """Hyper-parameters of :func:`fit_factor_model` (defaults tuned on ml-100k validation users).

    Attributes:
        n_factors: Factor dimension ``F``.
        inner: ``"map"`` (closed-form fold-in) or ``"sgd"`` (Meta-SGD steps).
        inner_steps: Steps of the ``"sgd"`` inner loop.
        inner_lr_init: Initial per-dimension rate of the ``"sgd"`` inner loop.
        support_encoder: Let the support set modulate the prior mean.
        neighbour_weight: Weight of the item-factor neighbourhood correction at prediction.
        neighbour_count: Its pseudo-count.
        neighbour_power: Its similarity exponent.
        train_neighbour: Learn α and c of the correction inside the meta loss (not kept).
        size_precision: Learn a support-size-dependent prior precision scale (not kept).
        members: Seed ensemble: fit this many models (seeds ``seed + 1000 m``) and average
            their predictions (one :class:`FactorModel` holding the others as members).
        user_fields: User attributes that set the prior mean.
        pretrain_steps: Full-batch Adam steps of the plain matrix factorisation.
        pretrain_lr: Its learning rate.
        item_bias_reg: L2 precision of the item biases (pseudo-ratings).
        item_factor_reg: L2 precision of the item factors.
        user_bias_reg: L2 precision of the train users' biases (also the initial prior).
        user_factor_reg: L2 precision of the train users' factors (also the initial prior).
        meta_steps: Outer steps (upper bound).
        meta_batch_size: Tasks per outer step.
        outer_lr: Adam rate of the outer loop.
        train_items: Let the outer loop move the item biases and factors too.
        outer_loss: Query loss of the outer loop, ``"mse"`` or ``"mae"`` (the evaluation
            metric; chosen on validation users).
        support_min: Smallest meta-training support set.
        support_max: Largest meta-training support set.
        query_size: Query ratings per task.
        max_ratings: Ratings drawn per meta-training task at most.
        eval_every: Outer steps between validations.
        patience: Validations without improvement before stopping.
        val_support_sizes: Support sizes of the validation tasks (their MAEs are averaged).
        val_draws: Query/support draws per validation user (more draws, less noisy stopping).
        min_user_ratings: Validation users need at least this many ratings (MeLU protocol).
        max_user_ratings: ... and at most this many.
        seed: Seeds initialisation and task sampling.
    """

    n_factors: int = 16
    inner: str = "map"
    inner_steps: int = 10
    inner_lr_init: float = 0.1
    support_encoder: bool = False
    neighbour_weight: float = 1.0
    neighbour_count: float = 5.0
    neighbour_power: float = 1.0
    train_neighbour: bool = False
    size_precision: bool = False
    members: int = 5
    user_fields: tuple[str, ...] = ("gender", "age_bucket", "occupation")
    pretrain_steps: int = 300
    pretrain_lr: float = 0.05
    item_bias_reg: float = 3.0
    item_factor_reg: float = 10.0
    user_bias_reg: float = 3.0
    user_factor_reg: float = 10.0
    meta_steps: int = 400
    meta_batch_size: int = 64
    outer_lr: float = 0.003
    train_items: bool = True
    outer_loss: str = "mae"
    support_min: int = 3
    support_max: int = 60
    query_size: int = 10
    max_ratings: int = 100
    eval_every: int = 10
    patience: int = 5
    val_support_sizes: tuple[int, ...] = (5, 10, 20)
    val_draws: int = 3
    min_user_ratings: int = 13
    max_user_ratings: int = 100
    seed: int = 0

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        data = asdict(self)
        data["user_fields"] = list(self.user_fields)
        data["val_support_sizes"] = list(self.val_support_sizes)
        return data


@dataclass
class FactorTrainingReport:
    """What happened during :func:`fit_factor_model`."""

    pretrain_loss: float = float("nan")
    steps: int = 0
    best_step: int = 0
    best_val_mae: float = float("inf")
    history: list[dict[str, float]] | None = None
    members: list[dict[str, float]] = field(default_factory=list)


def factor_config_for(
    encoder: FeatureEncoder, *, config: FactorTrainingConfig, global_mean: float
) -> FactorConfig:
    """The :class:`FactorConfig` matching ``encoder``'s row layout.

    Raises:
        ValueError: The encoder has no ``item_id`` field (``use_item_id`` off).
    """
    if "item_id" not in encoder.field_names:
        raise ValueError(
            "the factor model needs item ids in the encoded rows: set use_item_id: true"
        )
    fields = tuple(f for f in config.user_fields if f in encoder.field_names)
    return FactorConfig(
        field_names=tuple(encoder.field_names),
        field_sizes=tuple(len(encoder.vocabularies[n]) + 1 for n in encoder.field_names),
        user_fields=fields,
        n_factors=config.n_factors,
        global_mean=global_mean,
        inner=config.inner,
        inner_steps=config.inner_steps,
        inner_lr_init=config.inner_lr_init,
        bias_precision_init=config.user_bias_reg,
        factor_precision_init=config.user_factor_reg,
        support_encoder=config.support_encoder,
        neighbour_weight=config.neighbour_weight,
        neighbour_count=config.neighbour_count,
        neighbour_power=config.neighbour_power,
        train_neighbour=config.train_neighbour,
        size_precision=config.size_precision,
        members=config.members,
    )
