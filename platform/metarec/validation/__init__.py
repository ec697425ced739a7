"""The feature validation gate: Great Expectations 1.x suites per feature service.

Entry points live in :mod:`metarec.validation.gate` (``validate_training_set``,
``build_reference_profile``, ``raise_for_failure``); the record training requires is in
:mod:`metarec.validation.record`. This package imports nothing heavy on its own: Great
Expectations is imported only when a suite runs.
"""
