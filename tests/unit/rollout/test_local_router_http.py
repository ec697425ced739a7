"""The local router's request framing without a socket, and the options of `rollout router`.

Under real HTTP (both listeners, a stalled client, a chunked request through to the upstream):
``tests/integration/test_local_router_admin.py``.
"""

from __future__ import annotations

import io
from email.message import Message

import pytest
from metarec.cli.rollout import _router_config
from metarec.config import Settings
from metarec.config_rollout import RolloutSettings
from metarec.errors import ConfigError
from metarec.rollout.routers.local_http import RefusedRequestError, content_length, read_body


def _headers(*pairs: tuple[str, str]) -> Message:
    headers = Message()
    for key, value in pairs:
        headers[key] = value
    return headers


def _refused(headers: Message, data: bytes = b"", *, max_bytes: int = 100) -> int:
    with pytest.raises(RefusedRequestError) as refused:
        read_body(headers, io.BytesIO(data), max_bytes=max_bytes)
    return refused.value.status


def test_content_length_is_a_bounded_non_negative_integer():
    assert content_length(["0"], max_bytes=10) == 0
    assert content_length([" 10 ", "10"], max_bytes=10) == 10  # repeated, equal: one value
    for value in ("-1", "+1", "1.0", "0x10", "１", "", "1 2"):
        with pytest.raises(RefusedRequestError) as refused:
            content_length([value], max_bytes=10)
        assert refused.value.status == 400, value
    for value in ("11", "9" * 30, "1" + "0" * 5000):  # int() of 5001 digits would raise
        with pytest.raises(RefusedRequestError) as refused:
            content_length([value], max_bytes=10)
        assert refused.value.status == 413, value
    assert _refused(_headers(("content-length", "2"), ("content-length", "3"))) == 400


def test_bodies_are_read_whole_or_refused():
    assert read_body(_headers(), io.BytesIO(b"next request"), max_bytes=100) == b""
    body = read_body(_headers(("content-length", "3")), io.BytesIO(b"abcdef"), max_bytes=100)
    assert body == b"abc"
    assert _refused(_headers(("content-length", "5")), b"abc") == 400  # ended early


def test_chunked_bodies_are_decoded_whole():
    chunked = _headers(("transfer-encoding", "Chunked"))
    data = b"3;ext=1\r\nabc\r\n A \r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\nNEXT"
    stream = io.BytesIO(data)
    assert read_body(chunked, stream, max_bytes=100) == b"abc0123456789"
    assert stream.read() == b"NEXT"  # exactly the chunked body was consumed
    assert _refused(chunked, b"5\r\nabc") == 400  # ended inside a chunk
    assert _refused(chunked, b"3\r\nabcdef\r\n0\r\n\r\n") == 400  # chunk longer than its size
    assert _refused(chunked, b"-3\r\nabc\r\n0\r\n\r\n") == 400
    assert _refused(chunked, b"1" * 2000 + b"\r\n") == 400  # a size line without end
    assert _refused(chunked, b"40\r\n" + b"a" * 64 + b"\r\n0\r\n\r\n", max_bytes=63) == 413
    assert _refused(chunked, b"0\r\n" + b"t: 1\r\n" * 40 + b"\r\n") == 400  # endless trailers
    both = _headers(("transfer-encoding", "chunked"), ("content-length", "3"))
    assert _refused(both, b"3\r\nabc\r\n0\r\n\r\n") == 400
    assert _refused(_headers(("transfer-encoding", "gzip"))) == 501


def test_rollout_router_options_override_the_settings(tmp_path):
    def config(router: dict, **options):
        settings = Settings(home=tmp_path, rollout=RolloutSettings(router=router))
        options = {"port": None, "admin_port": None, "admin_token": None, **options}
        return _router_config(settings, **options)

    default = config({})
    assert (default.listen_port, default.admin_listen_port, default.admin_token) == (
        8080,
        8081,
        None,
    )
    moved = config({"admin_token": "env"}, port=9000)
    assert moved.admin_listen_port == 9001 and moved.admin_token.get_secret_value() == "env"
    chosen = config({"admin_token": "env"}, admin_port=0, admin_token="option")
    assert chosen.admin_listen_port == 0 and chosen.admin_token.get_secret_value() == "option"
    # One environment for both processes: the http router's token is the proxy's too.
    shared = config({"kind": "http", "admin_token": "shared"})
    assert shared.admin_token.get_secret_value() == "shared"
    with pytest.raises(ConfigError, match="own port"):
        config({}, port=9000, admin_port=9000)
