"""The control plane's routes, one router per concern."""
