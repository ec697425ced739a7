"""The online hit rate under concurrent threads (moved from tests/unit: threads)."""

import threading

import pytest
from metarec.serving.quality import OnlineHitRate

pytestmark = pytest.mark.integration


def test_online_hit_rate_is_thread_safe():
    tracker = OnlineHitRate(capacity=1000, window=100_000)
    positives: list[int] = []

    def work(user: int) -> None:
        for n in range(200):
            tracker.served(user, [n, n + 1])
            positives.append(tracker.score([(user, n, 5.0), (user, n + 5, 5.0)]).positives)

    threads = [threading.Thread(target=work, args=(u,)) for u in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(positives) == 8 * 200 * 2
    assert tracker.score([]).rate == 0.5  # every user's own list: one hit, one miss each time
