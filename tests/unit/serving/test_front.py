"""The service's own ASGI middlewares in front of BentoML's per-request layers."""

import bentoml
from metarec.serving.front import serve_own_middlewares_first


class Marker:
    """A pass-through ASGI middleware whose place in the stack the tests look for."""

    def __init__(self, app, **_options):
        self.app = app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


def make_service(name: str):
    @bentoml.service(name=name)
    class Echo:
        @bentoml.api
        def echo(self, text: str) -> str:
            return text

    Echo.add_asgi_middleware(Marker)
    return Echo


def stack_classes(service) -> list[type]:
    app = service.to_asgi(is_main=True)
    return [m.cls for m in app.user_middleware]


def test_only_the_named_service_gets_its_middlewares_first():
    first, other = make_service("front_first"), make_service("front_other")
    bentoml_order = stack_classes(first)
    assert bentoml_order.index(Marker) > 0  # BentoML's layers come first by default

    assert serve_own_middlewares_first(first) is True
    assert serve_own_middlewares_first(first) is True  # a second call changes nothing

    reordered = stack_classes(first)
    assert reordered[0] is Marker
    assert sorted(map(repr, reordered)) == sorted(map(repr, bentoml_order))  # nothing lost
    assert stack_classes(other).index(Marker) > 0  # another service keeps BentoML's order
