"""Drift notifications from the service itself, at ``serving.drift_alert_psi``.

On a cluster Prometheus alerts on the same series (the chart's PrometheusRule); this is what
tells people where no Alertmanager runs (a laptop, a plain VM). The alarm is edge-triggered
per statistic: it notifies once when the PSI reaches the threshold, and again only after the
PSI fell below 80 % of it (hysteresis, so a PSI hovering at the threshold does not flood).
"""

from __future__ import annotations

from collections.abc import Callable

from metarec.config import Settings
from metarec.notify import Notification, Notifier
from metarec.registry.types import VersionRef

REARM_SHARE = 0.8


class DriftAlarm:
    """Calls ``alert(statistic, psi, requests)`` when a statistic's PSI crosses ``threshold``."""

    def __init__(self, *, threshold: float, alert: Callable[[str, float, int], None]) -> None:
        """Arm every statistic.

        Args:
            threshold: The PSI that raises an alert.
            alert: What to do (the service sends a notification).
        """
        self.threshold = threshold
        self._alert = alert
        self._raised: set[str] = set()

    def __call__(self, values: dict[str, float | None], requests: int) -> None:
        """Observe one refresh of the drift gauges (the DriftMonitor's ``on_refresh``)."""
        for statistic, value in values.items():
            if value is None:
                continue
            if value >= self.threshold and statistic not in self._raised:
                self._raised.add(statistic)
                self._alert(statistic, value, requests)
            elif value < REARM_SHARE * self.threshold:
                self._raised.discard(statistic)


def drift_alarm(settings: Settings, *, model_version: str) -> DriftAlarm | None:
    """The service's alarm, sending ``drift_alert`` notifications (None: no webhook wants them).

    Args:
        settings: ``serving.drift_alert_psi`` and the ``notifications`` section.
        model_version: The served version's tag (``metarec:v3``).
    """
    config = settings.notifications
    if not any("drift_alert" in target.events for target in config.webhooks):
        return None
    notifier = Notifier.from_settings(config)
    ref = VersionRef.parse(model_version, default_model=settings.registry.model_name)
    threshold = settings.serving.drift_alert_psi

    def alert(statistic: str, value: float, requests: int) -> None:
        notifier.notify(
            Notification(
                kind="drift_alert",
                model=ref.model,
                version=ref.version,
                reason=f"PSI of {statistic} {value:.2f} ≥ {threshold:g} over the last "
                f"{requests} requests: the traffic no longer looks like the training data",
                details={"statistic": statistic, "psi": value, "window_requests": requests},
            )
        )

    return DriftAlarm(threshold=threshold, alert=alert)
