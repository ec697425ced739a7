"""The BentoML adaptation service: per-request few-shot personalisation of a registry version.

Modules, one concept each: :mod:`.schemas` (HTTP request/response models), :mod:`.loading` (a
registry version, checksum verified, and how offline evaluation adapts it), :mod:`.features`
(Feast online features, item matrix cached in memory), :mod:`.adapter` (batched adaptation
through the meta-learning core), :mod:`.ranking` (the served ranker, which alone serves a version
trained on implicit events), :mod:`.batching` (the micro-batcher), :mod:`.quality` (online
MAE and hit rate from feedback), :mod:`.metrics` (Prometheus), :mod:`.request_checks` (a request's
ids, items and counts checked), :mod:`.support` (support sets and the user's row), :mod:`.models`
(the rating model and ranker of a version), :mod:`.feedback_scoring` (rated feedback against
predictions), :mod:`.engine` (the request logic, no BentoML), :mod:`.http` (the request guard),
:mod:`.endpoints` (the JSON endpoints as a mounted Starlette app), :mod:`.service` (the
``@bentoml.service`` class).
"""
