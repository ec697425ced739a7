"""Training and evaluation of the meta-learned factor fold-in (`learning.factor_model`).

``fit_factor_model`` first fits a plain biased matrix factorisation on the meta-train users'
ratings of existing items (item biases and factors; each train user gets free parameters there),
then meta-trains the fold-in episodically on the same users (random support/query splits, the
outer loss is the query MAE after adaptation) with early stopping on the validation users' MAE.
By default it does this five times with different seeds and returns the seed ensemble (one
``FactorModel`` holding the other four as ``extra_members``; predictions are averaged).
No validation or test user's rating ever reaches an item parameter: item codes come from the
encoder (fitted on meta-train rows) and both phases read meta-train rows only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from metarec.learning.factor_model import FactorConfig, FactorModel, meta_loss
from metarec.learning.tasks import Task, batches, collate
from metarec.training.encoding import FeatureEncoder
from metarec.training.scenarios import Scenario, Split, TaskSource


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


def pretrain_factors(
    model: FactorModel,
    items: np.ndarray,
    users: np.ndarray,
    ratings: np.ndarray,
    *,
    config: FactorTrainingConfig,
    device: torch.device,
) -> float:
    """Fit ``model``'s global mean, item biases and factors by plain biased MF (in place).

    Full-batch Adam on ``Σ err² + Σ reg · param²`` (MAP with Gaussian priors) over the training
    ratings; each training user has free bias and factors, which are discarded afterwards except
    for their mean, which starts the learnt prior.

    Args:
        model: The model whose item parameters are fitted.
        items: Item codes of the training ratings (N,).
        users: Dense user indices 0..U-1 of the training ratings (N,).
        ratings: The ratings (N,).
        config: Regularisation, steps and rate.
        device: Where to train.

    Returns:
        The final training loss per rating.
    """
    generator = torch.Generator().manual_seed(config.seed)
    n_users, n_factors = int(users.max()) + 1, model.config.n_factors
    item_t = torch.as_tensor(items, device=device)  # (N,)
    user_t = torch.as_tensor(users, device=device)  # (N,)
    y = torch.as_tensor(ratings, dtype=torch.float32, device=device)  # (N,)
    theta = (0.1 * torch.randn(n_users, 1 + n_factors, generator=generator)).to(device)
    theta[:, 0] = 0.0
    theta.requires_grad_(True)  # (U, 1+F)
    with torch.no_grad():
        model.mean.fill_(float(y.mean()))
    params = [model.mean, model.item_bias.weight, model.item_factors.weight, theta]
    optimizer = torch.optim.Adam(params, lr=config.pretrain_lr)
    user_reg = torch.tensor(
        [config.user_bias_reg] + [config.user_factor_reg] * n_factors, device=device
    )  # (1+F,)
    loss = torch.tensor(float("nan"))
    for _ in range(config.pretrain_steps):
        optimizer.zero_grad(set_to_none=True)
        offset, z = model.item_terms_from_codes(item_t)  # (N,), (N, 1+F)
        err = y - offset - (z * theta[user_t]).sum(-1)  # (N,)
        penalty = (
            config.item_bias_reg * model.item_bias.weight.pow(2).sum()
            + config.item_factor_reg * model.item_factors.weight.pow(2).sum()
            + (user_reg * theta.pow(2)).sum()
        )
        loss = (err.pow(2).sum() + penalty) / len(y)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        model.item_bias.weight[0].zero_()
        model.item_factors.weight[0].zero_()
        model.prior_base.copy_(theta.mean(0))
    return float(loss.detach())


def _validation_tasks(
    source: TaskSource, split: Split, config: FactorTrainingConfig
) -> list[list[Task]]:
    users = [
        u
        for u in split.val_users
        if config.min_user_ratings
        <= len(source.existing.rows.get(u, ()))
        <= config.max_user_ratings
    ]
    return [
        [
            task
            for draw in range(config.val_draws)
            for task in source.evaluation_tasks(
                Scenario.NEW_USER,
                users,
                support_size=k,
                seed=split.seed + 1000 * draw,
                query_size=config.query_size,
            )
        ]
        for k in config.val_support_sizes
    ]


def _validation_mae(
    model: FactorModel, task_sets: Sequence[Sequence[Task]], device: torch.device
) -> float:
    maes = []
    for tasks in task_sets:
        preds = factor_predictions(model, tasks, device=device)
        errors = np.concatenate([p - t.query_y for p, t in zip(preds, tasks, strict=True)])
        maes.append(float(np.abs(errors).mean()))
    return float(np.mean(maes))


def fit_factor_model(
    source: TaskSource,
    split: Split,
    encoder: FeatureEncoder,
    *,
    config: FactorTrainingConfig | None = None,
    device: torch.device | str = "cpu",
    on_progress: Callable[[int, float, float | None], None] | None = None,
    report: FactorTrainingReport | None = None,
) -> FactorModel:
    """Pretrain item factors by plain MF, then meta-train the fold-in; return the best model.

    Args:
        source: Encoded rows and their grouping (the trainer's :class:`TaskSource`).
        split: Which users are meta-train / validation / test.
        encoder: The encoder of ``source`` (row layout, vocabulary sizes).
        config: Hyper-parameters (defaults: :class:`FactorTrainingConfig`).
        device: Where to train.
        on_progress: Called with (step, meta loss, validation MAE or None) after each step.
        report: Filled in with the training history when given.

    Returns:
        The model with the best validation MAE (eval mode, on ``device``).
    """
    config = config or FactorTrainingConfig()
    report = report if report is not None else FactorTrainingReport()
    device = torch.device(device)
    if config.members > 1:
        return _fit_ensemble(
            source,
            split,
            encoder,
            config=config,
            device=device,
            on_progress=on_progress,
            report=report,
        )
    rows = source.rows_of(split.train_users)  # existing items only
    items = source.x[rows, encoder.field_names.index("item_id")]
    torch.manual_seed(config.seed)
    model = FactorModel(
        factor_config_for(encoder, config=config, global_mean=float(source.y[rows].mean()))
    ).to(device)
    _, dense_users = np.unique(source.user_ids[rows], return_inverse=True)
    report.pretrain_loss = pretrain_factors(
        model, items, dense_users, source.y[rows], config=config, device=device
    )
    _meta_train(
        model, source, split, config=config, device=device, on_progress=on_progress, report=report
    )
    return model.eval()


def _fit_ensemble(
    source: TaskSource,
    split: Split,
    encoder: FeatureEncoder,
    *,
    config: FactorTrainingConfig,
    device: torch.device,
    on_progress: Callable[[int, float, float | None], None] | None,
    report: FactorTrainingReport,
) -> FactorModel:
    """Fit ``config.members`` single models (seeds ``seed + 1000 m``) and stack them.

    Member 0 is the model itself, the others its ``extra_members``. ``report`` describes
    member 0, plus every member's best step and validation MAE.
    """
    fitted = []
    for m in range(config.members):
        member_report = report if m == 0 else FactorTrainingReport()
        fitted.append(
            fit_factor_model(
                source,
                split,
                encoder,
                config=replace(config, members=1, seed=config.seed + 1000 * m),
                device=device,
                on_progress=on_progress,
                report=member_report,
            )
        )
        report.members.append(
            {"best_step": member_report.best_step, "best_val_mae": member_report.best_val_mae}
        )
    model = FactorModel(replace(fitted[0].config, members=config.members)).to(device)
    state = dict(fitted[0].state_dict())
    for m, member in enumerate(fitted[1:]):
        state.update({f"extra_members.{m}.{k}": v for k, v in member.state_dict().items()})
    model.load_state_dict(state)
    return model.eval()


def _meta_train(
    model: FactorModel,
    source: TaskSource,
    split: Split,
    *,
    config: FactorTrainingConfig,
    device: torch.device,
    on_progress: Callable[[int, float, float | None], None] | None,
    report: FactorTrainingReport,
) -> None:
    items = ("item_bias.", "item_factors.", "mean")
    params = [
        p for n, p in model.named_parameters() if config.train_items or not n.startswith(items)
    ]
    optimizer = torch.optim.Adam(params, lr=config.outer_lr)
    pool = np.array(
        [u for u in split.train_users if len(source.existing.rows.get(u, ())) > config.query_size]
    )
    val_sets = _validation_tasks(source, split, config)
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    report.best_val_mae = _validation_mae(model, val_sets, device) if val_sets else float("inf")
    report.history = [{"step": 0, "val_mae": report.best_val_mae}]
    bad = 0
    for step in range(1, config.meta_steps + 1):
        rng = np.random.default_rng([config.seed, 5, step])
        users = rng.choice(pool, size=min(config.meta_batch_size, len(pool)), replace=False)
        tasks = source.training_tasks(
            users,
            rng=rng,
            query_size=config.query_size,
            support_min=config.support_min,
            support_max=config.support_max,
            max_ratings=config.max_ratings,
        )
        batch = collate(tasks).to(device)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = meta_loss(
            model,
            batch.support_x,
            batch.support_y,
            batch.support_mask,
            batch.query_x,
            batch.query_y,
            batch.query_mask,
            kind=config.outer_loss,
        )
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.item_bias.weight[0].zero_()
            model.item_factors.weight[0].zero_()
        report.steps = step
        val_mae = None
        if val_sets and step % config.eval_every == 0:
            val_mae = _validation_mae(model, val_sets, device)
            report.history.append(
                {"step": step, "meta_loss": float(loss.detach()), "val_mae": val_mae}
            )
            if val_mae < report.best_val_mae - 1e-5:
                report.best_val_mae, report.best_step, bad = val_mae, step, 0
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
        if on_progress is not None:
            on_progress(step, float(loss.detach()), val_mae)
        if bad >= config.patience:
            break
    model.load_state_dict(best)


@torch.no_grad()
def factor_predictions(
    model: FactorModel, tasks: Sequence[Task], *, device: torch.device | str, batch_size: int = 256
) -> list[np.ndarray]:
    """Adapt to each task's support set and predict its query ratings, clamped to 1..5.

    Args:
        model: A trained factor model.
        tasks: Evaluation tasks (same rows as every other method gets).
        device: Where the model runs.
        batch_size: Tasks per batch.

    Returns:
        One float64 array of query predictions per task.
    """
    model.eval()
    out = []
    for chunk in batches(tasks, batch_size):
        batch = collate(chunk).to(device)
        with torch.enable_grad():  # the "sgd" inner loop differentiates the inner loss
            pred = model.predict_tasks(
                batch.support_x, batch.support_y, batch.support_mask, batch.query_x
            ).detach()  # (T, Q)
        pred = pred.clamp(1.0, 5.0).cpu().numpy()  # (T, Q)
        out.extend(pred[i, : len(t.query_y)].astype(np.float64) for i, t in enumerate(chunk))
    return out
