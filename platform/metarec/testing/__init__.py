"""Test fixtures: small valid artifacts and quickly trained, registered models.

For tests, benchmarks and demos only. No module of the core, the components or the workflows
imports this package (an import-linter contract in pyproject.toml keeps it so).
"""
