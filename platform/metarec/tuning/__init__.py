"""Hyper-parameter optimisation on Optuna: search space, trial objective, study, reports.

The use case (:func:`metarec.ops.tuning.tune`) runs a study with these pieces; docs/tuning.md
describes the tuning file and the study's storage, workers and reports.
"""
