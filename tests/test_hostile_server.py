"""Servers are other people's software: a hostile or broken one never crashes bench, never gets
a key meant for another origin, and never makes bench's memory or output grow without bound.

Each test scripts the hostile behaviour in tests/fake_server.py (see "Hostile modes" there).
"""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.config import Endpoint, Generation
from bench.measure.client import make_client
from bench.measure.request import RequestOptions, TokenCounter, run_request
from bench.measure.runner import probe_endpoint
from bench.measure.stream import SSEParser
from tests.conftest import collect
from tests.fake_server import FakeServer, Script

pytestmark = pytest.mark.usefixtures("both_clients")  # each test on both HTTP clients

KEY = "sk-canary-7f3a9c1e5b"
ENV = {"BENCH_TEST_KEY": KEY}
OUTPUT_CAP_CHARS = 64 * 1024  # what bench keeps of one answer at the default max_tokens (150)


@pytest.fixture
def other():
    """A second server on another port: another origin, which must never see the key."""
    with FakeServer(tokenize=True) as srv:
        srv.set_model("m", Script())
        yield srv


def endpoint(server: FakeServer) -> Endpoint:
    return Endpoint(name="e", base_url=server.url, api_key_env="BENCH_TEST_KEY")


def request(server: FakeServer, *, stream: bool = True, max_tokens: int = 150, timeout_s: float = 10,
            stall_s: float = 10, counter: TokenCounter | None = None, client=None):
    client = client or make_client(endpoint(server), ENV)
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


# ----------------------------------------------------------------------------- 2. malformed answers


def data(obj) -> str:
    return "data: " + json.dumps(obj) + "\n\n"


def delta(**d) -> dict:
    return {"choices": [{"index": 0, "delta": d, "finish_reason": None}]}


def finish(reason: str = "stop") -> dict:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def usage(**u) -> dict:
    return {"choices": [], "usage": u}


def sse(*middle: str) -> list[str]:
    """A well-formed stream with ``middle`` inserted after the first content chunk."""
    return [data(delta(role="assistant", content="")), data(delta(content="Hello")), *middle,
            data(delta(content=" world")), data(finish()),
            data(usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)), "data: [DONE]\n\n"]


MALFORMED_CHUNKS = {
    "choices is a string": {"choices": "boom"},
    "a choice is a number": {"choices": [1]},
    "delta is a string": {"choices": [{"delta": "str"}]},
    "content is a number": delta(content=5),
    "content is a list": delta(content=["a"]),
    "finish_reason is a number": {"choices": [{"delta": {}, "finish_reason": 7}]},
    "top level list": [1, 2],
    "top level number": 5,
    "top level null": None,
    "top level string": "str",
    "usage is a string": {"choices": [], "usage": "lots"},
    "usage tokens are words": usage(completion_tokens="many"),
    "usage tokens are negative": usage(completion_tokens=-5),
    "usage tokens are absurd": usage(completion_tokens=10**30),
    "usage tokens are booleans": usage(prompt_tokens=True),
}


@pytest.mark.parametrize("bad", list(MALFORMED_CHUNKS.values()), ids=list(MALFORMED_CHUNKS))
def test_a_malformed_chunk_fails_that_request_as_protocol(server, bad):
    server.set_model("m", Script(sse=sse(data(bad))))
    s = request(server)
    assert not s.ok and s.error == "protocol", (s.error, s.error_detail)
    assert json.dumps(bad)[:20] in s.error_detail  # what the server said, quoted
    assert len(s.error_detail) <= 400


@pytest.mark.parametrize("raw", ["data: {not json\n\n", "data: " + "[" * 100_000 + "\n\n",
                                 'data: {"choices": [{"delta": {"content": "\\ud800"}}]}\n\n'])
def test_text_that_is_not_json_fails_as_protocol(server, raw):
    server.set_model("m", Script(sse=sse(raw)))
    s = request(server)
    assert not s.ok and s.error == "protocol" and len(s.error_detail) <= 400


def test_one_malformed_model_does_not_stop_the_matrix(server):
    server.set_model("bad", Script(sse=sse(data({"choices": "boom"}))))
    server.set_model("good", Script())
    run = collect(server, "bad,good", rounds=1, warmup=0).run
    assert {s.error for s in run.samples if s.model == "bad"} == {"protocol"}
    assert all(s.ok for s in run.samples if s.model == "good") and len(run.samples) >= 5
    assert run.models["good"].status == "ok"


MALFORMED_BODIES = {
    "html": ("<html><body>" + "Welcome to nginx! " * 500 + "</body></html>", "text/html"),
    "not an object": ("[1, 2]", "application/json"),
    "choices is a string": ('{"choices": "boom"}', "application/json"),
    "message is a string": ('{"choices": [{"message": "hi", "finish_reason": "stop"}]}', "application/json"),
    "content is a number": ('{"choices": [{"message": {"content": 5}, "finish_reason": "stop"}]}', "application/json"),
    "usage is absurd": ('{"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}], '
                        '"usage": {"completion_tokens": 1000000000000000000000000000000}}', "application/json"),
    "empty body": ("", "application/json"),
}


@pytest.mark.parametrize("body,ctype", list(MALFORMED_BODIES.values()), ids=list(MALFORMED_BODIES))
def test_a_malformed_plain_answer_fails_as_protocol(server, body, ctype):
    server.set_model("m", Script(body=body, content_type=ctype))
    s = request(server, stream=False)
    assert not s.ok and s.error == "protocol", (s.error, s.error_detail)
    assert body[:12] in s.error_detail and len(s.error_detail) <= 400


def test_html_under_http_200_in_a_stream_is_protocol_not_truncated(server):
    server.set_model("m", Script(body="<html><body>Sign in to continue</body></html>", content_type="text/html"))
    s = request(server)
    assert s.error == "protocol" and "<html>" in s.error_detail


@pytest.mark.parametrize("reply", [{"count": -5, "tokens": []}, {"count": 10**30, "tokens": []},
                                   {"count": "many", "tokens": []}, {"tokens": "abc"}, [1, 2]])
def test_absurd_tokenizer_counts_are_not_taken(server, reply):
    server.tokenize, server.tokenize_reply = True, reply
    server.set_model("m", Script(tokens=["a "] * 4, send_usage=False))
    ep = endpoint(server)
    counter = TokenCounter(ep, make_client(ep, ENV), ENV, timeout_s=5)
    s = request(server, counter=counter)
    assert s.ok and s.tokens_source == "chunks" and s.completion_tokens == 4


# ----------------------------------------------------------------------------- the SSE reader


def test_sse_framing_variants_are_read_exactly(server):
    pieces = [
        ": keep-alive comment\r\n\r\n",
        "event: message\r\ndata: " + json.dumps(delta(content="He")) + "\r\n\r\n",
        'data: {"choices": [{"delta":\n',  # one event over two writes, then two data lines
        'data: {"content": "llo"}}]}\n\n',
        "data:" + json.dumps(delta(content="!")) + "\r\r",  # no space after the colon; CR line ends
        "id: 7\nretry: 10\ndata: " + json.dumps(finish()) + "\n",
        "\n",
        "data: [DONE]\n\n",
        "data: {this is after [DONE] and never read\n\n",
    ]
    server.set_model("m", Script(sse=pieces))
    s = request(server)
    assert s.ok, s.error_detail
    assert s.output == "Hello!" and s.chunks == 3 and s.finish_reason == "stop"


def test_error_events_fail_the_request_as_server_error(server):
    server.set_model("m", Script(sse=sse("event: error\ndata: " + json.dumps({"error": {"message": "OOM"}}) + "\n\n")))
    s = request(server)
    assert s.error == "server_error" and "OOM" in s.error_detail
    server.set_model("m", Script(sse=sse(data({"error": {"message": "model crashed"}}))))
    s = request(server)
    assert s.error == "server_error" and "model crashed" in s.error_detail


def test_a_stream_without_events_ending_early_is_truncated(server):
    server.set_model("m", Script(sse=[data(delta(content="a")), data(delta(content="b"))]))
    s = request(server)
    assert s.error == "truncated" and s.output == "ab"


def test_ttft_is_taken_when_the_bytes_arrive(server):
    pieces = [data(delta(role="assistant", content="")), data(delta(content="a")), data(delta(content="b")),
              data(finish()) + "data: [DONE]\n\n"]
    server.set_model("m", Script(sse=pieces, ttft_s=0.0, itl_s=0.1))
    s = request(server)
    assert s.ok and abs(s.ttft_s - 0.1) < 0.02 and abs(s.itl_s[0] - 0.1) < 0.02


def test_the_base_url_query_goes_on_every_request(server):
    server.set_model("m", Script())
    ep = Endpoint(name="e", base_url=server.url + "?api-version=9", api_key_env="BENCH_TEST_KEY")
    client = make_client(ep, ENV)
    probe_endpoint("e", ep, client)
    for stream in (True, False):
        opts = RequestOptions(gen=Generation(stream=stream), timeout_s=5, stall_timeout_s=5, retries=0)
        assert run_request(client, None, "m", "p", "hi", opts, round=0, warmup=False).ok
    v1 = [r["path"] for r in server.requests if r["path"].startswith("/v1/")]
    assert len(v1) == 3 and all(p.endswith("?api-version=9") for p in v1)
    assert all(r["headers"].get("authorization") == f"Bearer {KEY}" for r in server.requests)


# ----------------------------------------------------------------------------- 3. bounds


def test_an_endless_flood_of_chunks_is_cut_as_runaway_at_once(server):
    server.set_model("m", Script(flood_bytes=64 * 1024, flood_s=4))
    tracemalloc.start()
    try:
        t = time.monotonic()
        s = request(server, timeout_s=3)
        elapsed = time.monotonic() - t
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert s.error == "runaway" and not s.ok, (s.error, s.error_detail)
    assert elapsed < 2 and peak < 32 << 20
    assert len(s.output) <= OUTPUT_CAP_CHARS


def test_an_endless_line_is_cut_at_the_event_bound(server):
    server.set_model("m", Script(flood_bytes=64 * 1024, flood_line=True, flood_s=4))
    t = time.monotonic()
    s = request(server, timeout_s=3)
    assert s.error == "runaway" and "1048576" in s.error_detail and time.monotonic() - t < 2


def test_one_huge_chunk_is_not_a_successful_answer(server):
    server.set_model("m", Script(tokens=["x" * (8 << 20)]))
    s = request(server)
    assert s.error == "runaway" and len(s.output) <= OUTPUT_CAP_CHARS


def test_a_server_that_ignores_max_tokens_is_cut_past_the_cap(server):
    server.set_model("m", Script(tokens=["x "] * 200, ignore_max_tokens=True))
    s = request(server, max_tokens=10)
    assert s.error == "runaway" and s.chunks <= 40 and "max_tokens" in s.error_detail
    server.set_model("m", Script(tokens=["x "] * 40, ignore_max_tokens=True))
    s = request(server, max_tokens=10)
    assert s.ok and s.over_limit and s.completion_tokens == 40  # up to the cap: kept, flagged


def test_usage_far_past_max_tokens_is_runaway(server):
    server.set_model("m", Script(sse=sse()[:-2] + [data(usage(prompt_tokens=3, completion_tokens=5000)),
                                                     "data: [DONE]\n\n"]))
    s = request(server, max_tokens=10)
    assert s.error == "runaway"


def test_the_largest_count_is_a_count_and_one_more_is_not(server):
    # Found by the fuzz test below: 2**31 - 1 is a token count (a runaway here), 2**31 is not one.
    for n, kind in ((2**31 - 1, "runaway"), (2**31, "protocol")):
        server.set_model("m", Script(sse=sse()[:-2] + [data(usage(prompt_tokens=0, completion_tokens=n)),
                                                         "data: [DONE]\n\n"]))
        s = request(server, max_tokens=10)
        assert s.error == kind, (n, s.error, s.error_detail)


def test_a_plain_answer_that_never_ends_is_cut(server):
    server.set_model("m", Script(flood_bytes=64 * 1024, flood_s=4))
    t = time.monotonic()
    s = request(server, stream=False, timeout_s=3)
    assert s.error == "runaway" and time.monotonic() - t < 2


def test_a_huge_plain_answer_is_runaway(server):
    body = json.dumps({"choices": [{"message": {"content": "x" * (4 << 20)}, "finish_reason": "stop"}]})
    server.set_model("m", Script(body=body))
    s = request(server, stream=False)
    assert s.error == "runaway" and len(s.output) <= OUTPUT_CAP_CHARS


def test_an_endless_error_body_is_read_only_in_part(server):
    server.set_model("m", Script(status=503, flood_bytes=64 * 1024, flood_s=4))
    t = time.monotonic()
    s = request(server, timeout_s=3)
    assert s.error == "server_error" and s.attempts[0].http_status == 503 and time.monotonic() - t < 2


def test_a_drip_of_comments_cannot_outlast_the_request_timeout(server):
    server.set_model("m", Script(sse=[": ping\n\n"] * 400, itl_s=0.01))
    t = time.monotonic()
    s = request(server, timeout_s=1, stall_s=5)
    assert s.error == "timeout" and 0.9 < time.monotonic() - t < 2


# ----------------------------------------------------------------------------- 4. fuzzing

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)  # no lone surrogates
NOT_A_STRING = st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.integers(), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
NOT_AN_OBJECT = st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), TEXT, st.lists(st.integers(), max_size=3))
NOT_A_COUNT = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**31), TEXT, st.booleans(),
                        st.floats().filter(lambda f: not f.is_integer()), st.lists(st.integers(), max_size=2))


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


MALFORMED = st.one_of(
    NOT_AN_OBJECT.map(json.dumps),
    st.one_of(st.integers(), TEXT, st.dictionaries(TEXT, st.integers(), max_size=2)).map(
        lambda v: json.dumps({"choices": v})),
    NOT_AN_OBJECT.map(lambda v: json.dumps({"choices": [v]})),
    NOT_AN_OBJECT.filter(lambda v: v is not None).map(lambda v: json.dumps({"choices": [{"delta": v}]})),
    NOT_A_STRING.map(lambda v: json.dumps(delta(content=v))),
    NOT_A_STRING.map(lambda v: json.dumps({"choices": [{"delta": {}, "finish_reason": v}]})),
    NOT_AN_OBJECT.filter(lambda v: v is not None).map(lambda v: json.dumps({"choices": [], "usage": v})),
    NOT_A_COUNT.map(lambda v: json.dumps(usage(completion_tokens=v))),
    NOT_A_COUNT.map(lambda v: json.dumps(usage(prompt_tokens=v))),
    st.text(st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)), max_size=12).filter(_not_json),
)
GOOD_DELTA = st.fixed_dictionaries({}, optional={"content": st.one_of(st.none(), TEXT), "role": st.just("assistant"),
                                                 "reasoning_content": st.one_of(st.none(), TEXT)})


@st.composite
def streams(draw):
    """(SSE pieces, expected error kind or None, max_tokens)."""
    max_tokens = draw(st.integers(1, 40))
    deltas = draw(st.lists(GOOD_DELTA, max_size=8))
    # Within the output cap (4 x max_tokens content-bearing chunks): past it is a runaway, not a success.
    texty = [i for i, d in enumerate(deltas) if d.get("content") or d.get("reasoning_content")]
    for i in reversed(texty[4 * max_tokens:]):
        del deltas[i]
    payloads = [json.dumps(delta(**d)) for d in deltas]
    payloads.append(json.dumps(finish(draw(st.sampled_from(["stop", "length", "tool_calls"])))))
    has_text = any(d.get("content") or d.get("reasoning_content") for d in deltas)
    expected = None if has_text else "empty"
    if draw(st.booleans()):
        runaway = draw(st.booleans())
        n = draw(st.integers(4 * max_tokens + 1, 2**31 - 1) if runaway else st.integers(0, 4 * max_tokens))
        payloads.append(json.dumps(usage(prompt_tokens=draw(st.integers(0, 10**6)), completion_tokens=n)))
        expected = "runaway" if runaway else expected
    if draw(st.booleans()):
        at = draw(st.integers(0, len(payloads)))
        payloads.insert(at, draw(MALFORMED))
        # The first fault read decides: a runaway usage chunk (the last payload) read before it wins.
        expected = "runaway" if expected == "runaway" and at == len(payloads) - 1 else "protocol"
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = "".join((": ping" + eol if draw(st.booleans()) else "") + "data: " + p + eol + eol for p in payloads)
    text += "data: [DONE]" + eol + eol
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=6)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    return pieces, expected, max_tokens


@pytest.fixture(scope="module")
def fuzz_server():
    with FakeServer() as srv:
        srv.client = make_client(endpoint(srv), ENV)  # one client: building one takes tens of ms
        yield srv


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_fuzzed_streams_fail_cleanly_with_a_known_kind(fuzz_server, case):
    pieces, expected, max_tokens = case
    fuzz_server.set_model("m", Script(sse=pieces))
    s = request(fuzz_server, max_tokens=max_tokens, timeout_s=5, stall_s=5, client=fuzz_server.client)  # no raise
    assert s.error == expected, (s.error, s.error_detail, pieces)
    assert s.ok == (expected is None)
    if s.ok:
        assert s.ttft_s is not None and s.completion_tokens is not None and s.completion_tokens >= 0
    else:
        assert s.error_detail and len(s.error_detail) <= 501


@st.composite
def plain_bodies(draw):
    message = {"role": "assistant", "content": draw(st.one_of(TEXT.filter(bool)))}
    body = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": draw(st.integers(0, 600))}}
    kind = draw(st.sampled_from(["good", "content", "message", "choices", "usage", "top", "text"]))
    if kind == "content":
        message["content"] = draw(NOT_A_STRING)
    elif kind == "message":
        body["choices"][0]["message"] = draw(NOT_AN_OBJECT)
    elif kind == "choices":
        body["choices"] = draw(st.one_of(st.integers(), TEXT, st.lists(NOT_AN_OBJECT, min_size=1, max_size=2)))
    elif kind == "usage":
        body["usage"]["completion_tokens"] = draw(NOT_A_COUNT)
    elif kind == "top":
        return json.dumps(draw(NOT_AN_OBJECT)), "protocol"
    elif kind == "text":
        return draw(st.text(max_size=30).filter(_not_json)), "protocol"
    return json.dumps(body), None if kind == "good" else "protocol"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_bodies())
def test_fuzzed_plain_answers_fail_cleanly_as_protocol(fuzz_server, case):
    body, expected = case
    fuzz_server.set_model("m", Script(body=body))
    s = request(fuzz_server, stream=False, timeout_s=5, client=fuzz_server.client)
    assert s.error == expected, (s.error, s.error_detail, body)


EVENT = st.tuples(st.sampled_from([None, "message", "ping"]),
                  st.lists(st.text(st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)), max_size=10),
                           min_size=1, max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENT, max_size=6), st.sampled_from(["\n", "\r\n", "\r"]), st.lists(st.integers(0, 400), max_size=8))
def test_sse_parser_reads_the_same_events_however_the_bytes_are_split(events, eol, cuts):
    text = ""
    for name, lines in events:
        text += ": comment" + eol + (f"event: {name}" + eol if name else "")
        text += "".join("data: " + line + eol for line in lines) + eol
    raw = text.encode()
    cuts = sorted(min(c, len(raw)) for c in cuts)
    parser, got = SSEParser(), []
    for a, b in zip([0, *cuts], [*cuts, len(raw)]):
        got += parser.feed(raw[a:b])
    assert got == [(name or "message", "\n".join(lines)) for name, lines in events]


def test_a_model_list_is_bounded_in_size_and_count():
    """GET /models is read through the same bounded reader: a 5 MiB list is refused, not held."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from bench.measure import runner

    sizes = {"body": b""}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(sizes["body"])))
            self.end_headers()
            self.wfile.write(sizes["body"])

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        ep = Endpoint(name="x", base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1")
        client = make_client(ep, {})
        sizes["body"] = json.dumps({"data": [{"id": "m" * 100 + str(i)} for i in range(50_000)]}).encode()
        info = runner.probe_endpoint("x", ep, client)
        assert info.reachable and "unexpected" in info.error and "larger than" in info.error
        sizes["body"] = json.dumps({"data": [{"id": f"m{i}"} for i in range(20_000)] + [{"id": 5}, "x"]}).encode()
        info = runner.probe_endpoint("x", ep, client)
        assert info.reachable and info.error is None and len(info.models) == 10_000
    finally:
        httpd.shutdown()


def test_an_empty_read_between_cr_and_lf_does_not_end_an_extra_line():
    """Found by the fuzz test: httpx can hand over an empty read, which used to forget a pending CR."""
    parser = SSEParser()
    events = parser.feed(b"event: ping\r\ndata: x\r") + parser.feed(b"") + parser.feed(b"\n\r\n")
    assert events == [("ping", "x")]
