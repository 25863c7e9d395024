"""Servers are other people's software: a hostile or broken one never crashes bench, never gets
a key meant for another origin, and never makes bench's memory or output grow without bound.

Each test scripts the hostile behaviour in tests/fake_server.py (see "Hostile modes" there).
"""

from __future__ import annotations

import pytest

from bench.client import RequestOptions, TokenCounter, make_client, run_request
from bench.config import Endpoint, Generation
from bench.runner import probe_endpoint
from tests.fake_server import FakeServer, Script

KEY = "sk-canary-7f3a9c1e5b"
ENV = {"BENCH_TEST_KEY": KEY}


@pytest.fixture
def other():
    """A second server on another port: another origin, which must never see the key."""
    with FakeServer(tokenize=True) as srv:
        srv.set_model("m", Script())
        yield srv


def endpoint(server: FakeServer) -> Endpoint:
    return Endpoint(name="e", base_url=server.url, api_key_env="BENCH_TEST_KEY")


def request(server: FakeServer, *, stream: bool = True, max_tokens: int = 150, timeout_s: float = 10,
            stall_s: float = 10, counter: TokenCounter | None = None):
    ep = endpoint(server)
    client = make_client(ep, ENV)
    gen = Generation(max_tokens=max_tokens, stream=stream)
    opts = RequestOptions(gen=gen, timeout_s=timeout_s, stall_timeout_s=stall_s, retries=0)
    return run_request(client, counter, "m", "p", "Say hello.", opts, round=0, warmup=False, sleep=lambda s: None)


def leaked(srv: FakeServer) -> list[dict]:
    return [r for r in srv.requests if KEY in repr(dict(r["headers"]))]


# ----------------------------------------------------------------------------- 1. credentials


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_tokenizer_redirect_to_another_origin_gets_no_key_and_no_answer(server, other, status):
    root = other.url.removesuffix("/v1")
    for path in ("/extras/tokenize", "/tokenize"):
        server.redirects[path] = (status, root + path)
    ep = endpoint(server)
    client = make_client(ep, ENV)
    counter = TokenCounter(ep, client, ENV, timeout_s=5)
    assert counter.count_tokens("m", "one two three") is None  # redirected: no tokenizer
    assert leaked(other) == [] and other.requests == []


@pytest.mark.parametrize("stream", [True, False])
def test_chat_redirect_to_another_origin_is_not_followed(server, other, stream):
    server.redirects["/v1/chat/completions"] = (307, other.url + "/chat/completions")
    s = request(server, stream=stream)
    assert not s.ok and s.error == "client_error"
    assert "redirect" in s.error_detail and "not followed" in s.error_detail
    assert leaked(other) == [] and other.requests == []


def test_models_redirect_to_another_origin_is_not_followed(server, other):
    server.redirects["/v1/models"] = (302, other.url + "/models")
    ep = endpoint(server)
    info = probe_endpoint("e", ep, make_client(ep, ENV))
    assert info.models == []  # the other origin's list is not taken for this server's
    assert leaked(other) == [] and other.requests == []
