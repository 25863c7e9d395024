"""Measurement truth against a scripted server: timings, token counts, and every failure kind."""

from __future__ import annotations

import statistics

import pytest

from bench.results import stats
from tests.conftest import Script, collect

pytestmark = pytest.mark.usefixtures("both_clients")  # each test on both HTTP clients

TTFT, ITL = 0.200, 0.010


def ok_samples(run, model):
    return [s for s in run.samples if s.model == model and not s.warmup and s.ok]


def test_ttft_and_inter_token_gaps_match_the_script(server):
    server.set_model("m", Script(ttft_s=TTFT, itl_s=ITL))
    run = collect(server, "m", rounds=2, warmup=1).run
    samples = ok_samples(run, "m")
    assert len(samples) == 8
    ttft = statistics.median(s.ttft_s for s in samples)
    itl = statistics.median(g for s in samples for g in s.itl_s)
    assert abs(ttft - TTFT) < 0.005, ttft
    assert abs(itl - ITL) < 0.0005, itl
    # 20 tokens: 19 gaps after the first token, TTFT excluded from the gaps.
    assert all(len(s.itl_s) == 19 for s in samples)
    # e2e = TTFT + 19 gaps; decode tokens/s = 19 / (e2e - TTFT) = 1 / ITL.
    e2e = statistics.median(s.e2e_s for s in samples)
    assert abs(e2e - (TTFT + 19 * ITL)) < 0.01
    tps = statistics.median(stats.decode_tps(s) for s in samples)
    assert abs(tps - 1 / ITL) / (1 / ITL) < 0.05, tps


def test_ttft_is_not_taken_from_the_empty_role_chunk(server):
    # The fake sends {"role": "assistant", "content": ""} at once; TTFT must wait for content.
    server.set_model("m", Script(ttft_s=0.15, itl_s=0.001))
    run = collect(server, "m", rounds=1, warmup=0).run
    assert min(s.ttft_s for s in ok_samples(run, "m")) > 0.14


def test_reasoning_content_counts_as_first_token(server):
    server.set_model("m", Script(ttft_s=0.05, itl_s=0.02, reasoning=["think "] * 5, tokens=["a "] * 3))
    run = collect(server, "m", rounds=1, warmup=1).run
    assert abs(statistics.median(s.ttft_s for s in ok_samples(run, "m")) - 0.05) < 0.005
    s = ok_samples(run, "m")[0]
    assert s.reasoning == "think " * 5 and s.output == "a " * 3
    assert s.completion_tokens == 8


@pytest.mark.parametrize("per_chunk", [1, 3])
def test_completion_tokens_exact_from_usage_even_with_several_tokens_per_chunk(server, per_chunk):
    server.set_model("m", Script(tokens=[f"t{i} " for i in range(12)], tokens_per_chunk=per_chunk, itl_s=0.002))
    run = collect(server, "m", rounds=1, warmup=0).run
    for s in ok_samples(run, "m"):
        assert s.completion_tokens == 12
        assert s.prompt_tokens == 7
        assert s.tokens_source == "usage"
        assert s.chunks == -(-12 // per_chunk)


def test_tokens_counted_with_tokenize_endpoint_when_no_usage(server):
    server.tokenize = True
    server.set_model("m", Script(tokens=[f"w{i} " for i in range(9)], tokens_per_chunk=3, send_usage=False))
    run = collect(server, "m", rounds=1, warmup=0).run
    for s in ok_samples(run, "m"):
        assert s.completion_tokens == 9  # not 3 chunks
        assert s.tokens_source == "tokenize"


def test_tokens_fall_back_to_chunks_and_say_so(server):
    server.set_model("m", Script(tokens=["x "] * 6, send_usage=False))
    run = collect(server, "m", rounds=1, warmup=0).run
    for s in ok_samples(run, "m"):
        assert s.completion_tokens == 6
        assert s.tokens_source == "chunks"
    assert stats.model_stats("m", run.samples).tokens_sources == ["chunks"]


def test_usage_probe_is_used_only_when_it_reproduces_the_output(server):
    # Streams carry no usage and there is no tokenizer; the non-streamed probe carries usage.
    stream = Script(tokens=["a "] * 4, tokens_per_chunk=2, send_usage=False)
    same = Script(tokens=["a "] * 4, send_usage=True)
    different = Script(tokens=["b "] * 5, send_usage=True)
    # Per prompt: the streamed request, then the probe (cached per prompt).
    server.enqueue("m", stream, same, stream, same, stream, different, stream, different)
    run = collect(server, "m", rounds=1, warmup=0).run
    got = [(s.tokens_source, s.completion_tokens) for s in ok_samples(run, "m")]
    # A probe that reproduces the text gives exact counts; one that does not is not trusted.
    assert got == [("usage_probe", 4), ("usage_probe", 4), ("chunks", 2), ("chunks", 2)]


def test_truncated_stream_is_a_failure_not_a_short_answer(server):
    server.set_model("m", Script(truncate_after=3))
    run = collect(server, "m", rounds=1, warmup=0).run
    measured = [s for s in run.samples if not s.warmup]
    assert measured and all(not s.ok and s.error == "truncated" for s in measured)
    ms = stats.model_stats("m", run.samples)
    assert ms.ttft.n == 0 and ms.e2e.n == 0 and ms.ok == 0


def test_truncation_without_chunked_framing_is_detected_too(server):
    server.set_model("m", Script(truncate_after=2, chunked=False))
    run = collect(server, "m", rounds=1, warmup=0).run
    assert {s.error for s in run.samples} == {"truncated"}


def test_empty_answer_is_a_failure(server):
    server.set_model("m", Script(empty=True))
    run = collect(server, "m", rounds=1, warmup=0).run
    assert {s.error for s in run.samples} == {"empty"}


def test_failures_never_enter_latency_statistics(server):
    server.set_model("m", Script(ttft_s=0.05, itl_s=0.001))
    server.enqueue("m", Script(truncate_after=1), Script(empty=True))
    run = collect(server, "m", rounds=1, warmup=0).run
    ms = stats.model_stats("m", run.samples)
    assert (ms.ok, ms.failed) == (2, 2)
    assert ms.errors == {"truncated": 1, "empty": 1}
    assert ms.ttft.n == 2 and ms.ttft.min > 0.04  # no zeros from failed requests
    assert ms.e2e.n == 2 and ms.e2e.min > 0.04


def test_429_is_retried_and_every_attempt_recorded(server):
    server.set_model("m", Script())
    server.enqueue("m", Script(status=429, retry_after=0), Script(status=503))
    run = collect(server, "m", rounds=1, warmup=0).run
    first = run.samples[0]
    assert first.ok
    assert [a.error for a in first.attempts] == ["rate_limited", "server_error", None]
    assert first.attempts[0].http_status == 429 and first.attempts[0].retry_after_s == 0


def test_persistent_429_fails_as_rate_limited_after_bounded_retries(server):
    server.set_model("m", Script(status=429))
    run = collect(server, "m", rounds=1, warmup=0).run
    s = run.samples[0]
    assert not s.ok and s.error == "rate_limited"
    assert len(s.attempts) == 4  # 1 + 3 retries
    # Three consecutive failures: the model is abandoned, not hammered for every cell.
    assert run.models["m"].status == "failed"
    assert len(run.samples) == 3


def test_stall_is_cut_and_recorded(server):
    server.set_model("m", Script(stall_after=2, stall_s=20, itl_s=0.001))
    run = collect(server, "m", rounds=1, warmup=0, stall_timeout=0.5).run
    s = run.samples[0]
    assert not s.ok and s.error == "stall"
    assert 0.5 <= s.attempts[0].elapsed_s < 5
    assert "mid-stream" in s.error_detail


def test_request_timeout_cuts_a_slow_but_steady_stream(server):
    server.set_model("m", Script(tokens=["x "] * 200, itl_s=0.05))
    run = collect(server, "m", rounds=1, warmup=0, timeout=0.6, max_tokens=200).run
    s = run.samples[0]
    assert s.error == "timeout" and not s.ok
    assert 0.5 <= s.attempts[0].elapsed_s < 3  # the timeout counts from the call, elapsed from the send


def test_request_timeout_ends_a_silent_stream_on_time(server):
    # Silent after one chunk for longer than the request timeout but shorter than the stall one.
    server.set_model("m", Script(stall_after=1, stall_s=20, itl_s=0.001))
    server.enqueue("m", Script(ttft_s=20))  # and a server that sends nothing at all
    run = collect(server, "m", rounds=1, warmup=0, timeout=1.0, stall_timeout=20).run
    for s in run.samples[:2]:
        assert s.error == "timeout"
        assert 0.9 < s.attempts[0].elapsed_s < 3


def test_unknown_model_is_skipped_with_what_the_server_has(server):
    server.set_model("real", Script())
    run = collect(server, "real,ghost", rounds=1, warmup=0).run
    assert run.models["ghost"].status == "skipped"
    assert "ghost" in run.models["ghost"].reason and "real" in run.models["ghost"].reason
    assert run.models["real"].status == "ok"
    assert run.status == "partial"
    assert not any(s.model == "ghost" for s in run.samples)


def test_unknown_model_found_by_404_when_server_lists_nothing(server):
    # A server whose /models list is empty gives no hint; the 404 from the request decides.
    run = collect(server, "ghost", rounds=1, warmup=1).run
    assert run.models["ghost"].status == "skipped"
    assert run.samples[0].error == "unknown_model"


def test_server_that_ignores_max_tokens_is_flagged(server):
    server.set_model("m", Script(tokens=["x "] * 30, ignore_max_tokens=True))
    run = collect(server, "m", rounds=1, warmup=0, max_tokens=10).run
    body = [r["body"] for r in server.requests if r["path"].endswith("/chat/completions")][0]
    assert body["max_tokens"] == 10 and "max_completion_tokens" not in body
    s = run.samples[0]
    assert s.ok and s.completion_tokens == 30 and s.over_limit
    assert stats.model_stats("m", run.samples).over_limit == 4


def test_request_parameters(server):
    server.set_model("m", Script())
    collect(server, "m", rounds=1, warmup=0)
    body = [r["body"] for r in server.requests if r["path"].endswith("/chat/completions")][0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0 and body["seed"] == 42 and body["max_tokens"] == 150


def test_no_stream_measures_end_to_end_only(server):
    server.set_model("m", Script(ttft_s=0.05, itl_s=0.005))
    run = collect(server, "m", rounds=1, warmup=0, stream=False).run
    for s in run.samples:
        assert s.ok and not s.stream and s.ttft_s is None and s.itl_s == []
        assert s.e2e_s > 0.05 and s.completion_tokens == 20 and s.tokens_source == "usage"
    ms = stats.model_stats("m", run.samples)
    assert ms.decode_tps.n == 0 and ms.e2e_tps.n == 4


def test_server_down_skips_models_and_keeps_going(server):
    server.set_model("m", Script())
    server.down = True
    run = collect(server, "m", rounds=1, warmup=0).run
    assert run.models["m"].status == "skipped"
    assert run.status == "partial"


def test_memory_of_a_loopback_server_process_is_measured(tmp_path):
    """A server bench did not start, on this machine: its process tree's RSS is sampled per model."""
    import json as _json
    import subprocess
    import sys
    from pathlib import Path

    cfg = tmp_path / "fake.json"
    cfg.write_text(_json.dumps({"models": {"m": {"ttft_s": 0.02, "itl_s": 0.002}}}))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "fake_server.py"), "--port", "0",
                             "--config", str(cfg)], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split()[1]
        from bench import config
        from bench.measure import runner

        plan = config.resolve(None, env={}, endpoint=url, models="m", rounds=1, warmup=0,
                              results_dir=tmp_path / "results")
        plan, writer = runner.prepare(plan)
        run = runner.collect(plan, writer, env={}).run
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    extra = run.models["m"].extra
    assert f"(pid {proc.pid})" in extra["memory_source"]
    assert 5e6 < extra["peak_rss_bytes"] < 2e9 and extra["rss_before_bytes"] > 0
