"""MetaRec."""
