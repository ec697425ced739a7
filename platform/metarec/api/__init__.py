"""The control-plane API (FastAPI): the registry and the gate over HTTP."""

from metarec.api.app import create_app

__all__ = ["create_app"]
