"""MetaRec: an MLOps platform for meta-learned (few-shot) recommenders."""

__version__ = "0.1.0"
