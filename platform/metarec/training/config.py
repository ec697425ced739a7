"""Typed training hyper-parameters, loadable from YAML (``metarec train --config FILE``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from metarec.errors import ConfigError
from metarec.learning.algorithms import Algorithm
from metarec.training.scenarios import Scenario, parse_support_size


class TrainingConfig(BaseModel):
    """Everything that decides a training run (recorded in the model card)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Algorithm = Field(default=Algorithm.MAML, description="Meta-learning algorithm.")
    seed: int = Field(default=0, description="Seeds splits, task sampling and initialisation.")
    split_seed: int | None = Field(
        default=None,
        description="Seeds the user split and query draws alone (None: `seed`). Keep it fixed "
        "across retrains with other seeds so the gate compares versions on the same users.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="`auto` picks CUDA when present."
    )
    # Model
    embedding_dim: int = Field(default=32, ge=1)
    hidden: tuple[int, ...] = Field(default=(64, 64), description="Decision layer widths.")
    use_user_id: bool = Field(default=False, description="Embed user ids (off: new users).")
    use_item_id: bool = Field(
        default=True,
        description="Embed item ids of training items (with item_bias: a learnt item bias); "
        "rarer and new items encode as unknown.",
    )
    item_bias: bool = Field(
        default=True, description="With use_item_id: add a learnt scalar item bias to the output."
    )
    min_users_per_value: int = Field(
        default=20, ge=1, description="Rarer user-attribute values (e.g. zip prefixes) → unknown."
    )
    min_item_ratings: int = Field(default=3, ge=1, description="Rarer item ids → unknown.")
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description="Per-field encoding overrides of the model inputs the training set records "
        "(its feature service's fields): categorical, numeric, bag, vector, bucket:N or skip.",
    )
    global_weight_decay: float = Field(default=0.3, ge=0, description="Global model L2.")
    # Meta-training
    max_steps: int = Field(default=150, ge=0, description="Outer steps (upper bound).")
    meta_batch_size: int = Field(default=32, ge=1, description="Tasks (users) per outer step.")
    outer_lr: float = Field(default=5e-4, gt=0)
    outer_weight_decay: float = Field(default=0.0, ge=0, description="AdamW decay, outer loop.")
    meta_train_embeddings: bool = Field(
        default=True,
        description="Let the outer loop move the embeddings (false: only the decision layers "
        "and Meta-SGD rates are meta-learned; the embeddings stay as the global model left "
        "them, which resists over-fitting the meta-training users).",
    )
    inner_steps: int = Field(default=5, ge=0)
    inner_lr: float = Field(default=0.02, gt=0)
    query_size: int = Field(default=10, ge=1)
    train_support_min: int = Field(default=3, ge=1)
    train_support_max: int = Field(default=30, ge=1)
    max_ratings_per_task: int = Field(default=100, ge=2)
    init_from_global: bool = Field(
        default=True, description="Start meta-training from the global model's weights."
    )
    # Early stopping and checkpoints
    eval_every: int = Field(default=10, ge=1, description="Validate every N steps.")
    patience: int = Field(default=4, ge=1, description="Stop after N validations without gain.")
    checkpoint_every: int = Field(default=50, ge=1, description="Checkpoint every N steps.")
    val_support_size: int = Field(default=10, ge=1)
    # Baselines
    global_epochs: int = Field(default=8, ge=0)
    global_lr: float = Field(default=3e-3, gt=0)
    finetune_steps: int = Field(default=5, ge=0)
    finetune_lr: float = Field(default=0.02, gt=0)
    # Catalogue ranker (what /recommend ranks with)
    ranker: bool = Field(
        default=True,
        description="Train the meta-learned catalogue ranker and run the ranking protocol.",
    )
    ranker_dim: int = Field(default=64, ge=2, description="Width of user and item vectors.")
    ranker_inner_steps: int = Field(default=3, ge=0, description="Inner steps per user.")
    ranker_inner_lr: float = Field(
        default=0.5, gt=0, description="Initial per-dimension inner step size (learnt)."
    )
    ranker_outer_lr: float = Field(default=5e-4, gt=0)
    ranker_max_steps: int = Field(default=2500, ge=1, description="Outer steps (upper bound).")
    ranker_batch_size: int = Field(default=64, ge=1, description="Users per outer step.")
    ranker_cold_start_share: float = Field(
        default=0.25,
        ge=0.0,
        lt=1.0,
        description="Share of ranker meta-training tasks with no support (a new user ranked "
        "from their attributes alone).",
    )
    ranker_eval_every: int = Field(
        default=100, ge=1, description="Validate (NDCG@20 of validation users) every N steps."
    )
    ranking_support_sizes: tuple[int, ...] = Field(
        default=(0, 5, 10, 20),
        description="K of the ranking protocol (first K known ratings; 0: a new user with no "
        "ratings yet, ranked from their attributes).",
    )
    ranking_orders: tuple[Literal["time", "random"], ...] = Field(
        default=("time", "random"), description="Support orders of the ranking protocol."
    )
    # Meta-learned factor fold-in (an extra rating method, "factor_map")
    factor_model: bool = Field(
        default=True,
        description="Fit the meta-learned factor fold-in (learning.factor_model) after "
        "meta-training, evaluate it as `factor_map` and store it in the artifact "
        "(factor_model.safetensors). Needs use_item_id: true.",
    )
    factor_pretrain_steps: int = Field(
        default=300, ge=0, description="Full-batch steps of its matrix-factorisation pretraining."
    )
    factor_max_steps: int = Field(
        default=400, ge=0, description="Its outer (meta-training) steps (upper bound)."
    )
    # Splits and evaluation
    n_folds: int | None = Field(
        default=None,
        ge=2,
        description="With test_fold: the users are cut into n_folds seeded folds and fold "
        "`test_fold` is the test set (every user is a test user once over the folds); "
        "validation users come from the rest. None: test_fraction of the users.",
    )
    test_fold: int = Field(default=0, ge=0, description="Which fold is held out (n_folds).")
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    new_item_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_ratings: int = Field(default=13, ge=2, description="MeLU protocol: 13–100 ratings.")
    max_ratings: int = Field(default=100, ge=2)
    scenarios: tuple[Scenario, ...] = tuple(Scenario)
    support_sizes: tuple[str, ...] = ("5", "10", "20", "all")

    @field_validator("support_sizes")
    @classmethod
    def _check_sizes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for size in value:
            parse_support_size(size)
        return tuple(str(v).lower() for v in value)

    @model_validator(mode="after")
    def _check_factor_model(self) -> TrainingConfig:
        if self.factor_model and not self.use_item_id:
            raise ValueError(
                "factor_model needs item ids: set use_item_id: true, or factor_model: false"
            )
        return self

    @classmethod
    def from_yaml(cls, path: Path, **overrides: object) -> TrainingConfig:
        """Load from a YAML mapping; ``overrides`` (not None) win.

        Raises:
            ConfigError: The file is missing, not YAML, or has an invalid value.
        """
        fix = "fix the file; keys are the fields of TrainingConfig (see docs/learning.md)."
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read training config ({exc}).", fix=fix) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc}).", fix=fix) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the training config must be a mapping.", fix=fix)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.build(data, source=str(path))

    @classmethod
    def build(cls, data: dict[str, object], *, source: str = "training config") -> TrainingConfig:
        """Validate ``data``; raise :class:`ConfigError` naming each bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                ": ".join(filter(None, (".".join(str(p) for p in e["loc"]), e["msg"])))
                for e in exc.errors()
            )
            raise ConfigError(
                f"{source}: invalid training config ({problems}).",
                fix="correct those fields (see docs/learning.md for every field).",
            ) from exc
