"""Closed-loop load (--concurrency): against the scripted server grown a capacity limit (beyond S
streams in flight every stream's token gaps stretch in proportion), bench keeps each level's
streams in flight and sees the slowdown where it is."""

from __future__ import annotations

import pytest

from bench.analysis.load import levels
from bench.config import resolve
from bench.errors import ConfigError
from bench.measure import runner
from bench.results import store
from tests.conftest import Script, cli
from tests.fake_server import FakeServer

S = 4


def _run(srv, levels_, n=16, **kw):
    plan, writer = runner.prepare(resolve(None, env={}, endpoint=srv.url, models="m", concurrency=levels_,
                                          requests_per_level=n, **kw))
    return store.load_run(runner.collect(plan, writer, env={}, sleep=lambda s: None).path)


def test_itl_doubles_from_s_to_2s_streams_and_every_level_keeps_its_streams_in_flight():
    with FakeServer({"m": Script(itl_s=0.01, capacity=S)}) as srv:
        run = _run(srv, [S, 2 * S])
        assert srv.max_in_flight == 2 * S
    a, b = levels(run, "m")
    assert (a.concurrency, a.n, a.errors, b.concurrency, b.n, b.errors) == (S, 16, 0, 2 * S, 16, 0)
    assert 1.6 < b.itl_p50 / a.itl_p50 < 2.5, (a.itl_p50, b.itl_p50)
    # cool-down kept the level's streams busy until its last measured request ended
    assert a.achieved_concurrency > 0.8 * S and b.achieved_concurrency > 0.8 * 2 * S
    # throughput stops growing past S: twice the streams, about the same tokens/s
    assert b.output_tokens_per_s / a.output_tokens_per_s < 1.3


def test_samples_carry_their_level_and_unmeasured_requests_are_warmup():
    with FakeServer({"m": Script(itl_s=0.002)}) as srv:
        run = _run(srv, [1, 3], n=6)
    measured = [s for s in run.samples if not s.warmup]
    assert len(measured) == 12 and sorted({s.scenario["concurrency"] for s in measured}) == [1, 3]
    assert len({s.round for s in measured}) == 12  # each cell once
    warm = [s for s in run.samples if s.warmup and s.scenario.get("unmeasured")]
    assert len(warm) >= 1 + 3  # at least each stream's ramp-up request
    assert run.workload.scenario == {"name": "concurrency", "levels": [1, 3], "requests_per_level": 6, "seed": 42}
    assert run.status == "complete"


def test_prompts_are_drawn_in_a_fixed_seeded_order():
    with FakeServer({"m": Script(itl_s=0.001)}) as srv:
        first, second = _run(srv, [2], n=8), _run(srv, [2], n=8)
    order = [[s.prompt_id for s in sorted((x for x in r.samples if not x.warmup), key=lambda x: x.round)]
             for r in (first, second)]
    assert order[0] == order[1] and len(set(order[0])) > 1
    assert first.workload.hash == second.workload.hash


def test_an_interrupted_load_run_resumes_only_its_missing_cells(tmp_path):
    with FakeServer({"m": Script(itl_s=0.001)}) as srv:
        run = _run(srv, [2], n=6, results_dir=tmp_path)
        path = tmp_path / f"{run.run_id}.json"
        data = path.read_text()
        import json

        d = json.loads(data)
        d["samples"] = [s for s in d["samples"] if s["warmup"] or s["round"] < 3]
        d["status"] = "interrupted"
        path.write_text(json.dumps(d))
        before = len(srv.requests)
        r = cli("collect", "--resume", run.run_id, "--endpoint", srv.url, "--results-dir", str(tmp_path), "-q")
        assert r.exit_code == 0, r.output
    resumed = store.load_run(path)
    assert sorted(s.round for s in resumed.samples if not s.warmup) == list(range(6))
    assert len([x for x in srv.requests[before:] if x["path"] == "/v1/chat/completions"]) >= 3


@pytest.mark.parametrize("args, message", [
    (["--concurrency", "0"], "levels must be from 1 to 1024"),
    (["--concurrency", "2,x"], "give whole numbers of streams"),
    (["--concurrency", "2", "--requests-per-level", "0"], "--requests-per-level must be a whole number of at least 1"),
    (["--requests-per-level", "5"], "--requests-per-level is the size of each --concurrency or --rate level"),
    (["--rate", "2", "--concurrency", "2"], "two kinds of sweep: choose one"),
    (["--rate", "0"], "--rate takes request rates above 0"),
    (["--rate", "fast"], "give requests per second"),
    (["--duration", "5"], "give --rate too"),
    (["--rate", "2", "--max-in-flight", "0"], "--max-in-flight must be from 1 to 1024"),
    (["--rate", "2", "--duration", "-1"], "--duration must be seconds above 0"),
])
def test_bad_load_flags_are_one_line_errors_before_any_request(server, args, message):
    server.set_model("m", Script())
    r = cli("collect", "--endpoint", server.url, "--models", "m", "-q", *args)
    assert r.exit_code == 2 and message in r.output + r.stderr and "Traceback" not in r.output + r.stderr
    assert not [x for x in server.requests if x["path"] == "/v1/chat/completions"]


def test_a_level_beyond_the_open_file_limit_is_refused(monkeypatch, server):
    from bench.measure.scenarios import concurrency

    monkeypatch.setattr(concurrency, "_open_files_limit", lambda: 100)
    with pytest.raises(ConfigError, match=r"concurrency 64 needs about 192 open files; this process may open 100"):
        concurrency.Concurrency.from_params({"levels": [1, 64], "requests_per_level": 4})


def _capacity_run(tmp_path):
    with FakeServer({"m": Script(itl_s=0.01, capacity=S)}) as srv:
        return _run(srv, [1, 2, S, 2 * S, 4 * S], results_dir=tmp_path)


def test_capacity_finds_s_under_an_slo_that_holds_only_up_to_s_and_the_knee_at_s(tmp_path):
    import json

    run = _capacity_run(tmp_path)
    # up to S streams every gap is 10 ms; at 2S they are 20 ms: an ITL bound of 15 ms holds up to S
    r = cli("capacity", run.run_id, "--results-dir", str(tmp_path), "--slo", "itl_p95<=0.015,ttft_p95<=0.5", "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)["models"]["m"]
    assert m["max_concurrency"] == S and m["knee"] == S and m["max_rate"] is None
    assert m["sentence"] == "m on this machine: ITL p95 ≤ 15 ms and TTFT p95 ≤ 500 ms up to 4 concurrent users"
    by = {lv["concurrency"]: lv for lv in m["levels"]}
    assert by[S]["passes"] and by[S]["good_share"] == 1.0 and by[S]["goodput"] > 0
    assert not by[2 * S]["passes"] and by[2 * S]["failed_bounds"] == ["ITL p95 ≤ 15 ms"]
    assert by[2 * S]["good_share"] < 0.2
    table = cli("capacity", run.run_id, "--results-dir", str(tmp_path), "--slo", "itl_p95<=0.015")
    assert "up to 4 concurrent users" in table.output and "(knee)" in table.output
    assert json.loads(r.output)["models"]["m"]["knee_key"] == "4 streams"


def test_an_slo_that_never_holds_says_so(tmp_path):
    import json

    run = _capacity_run(tmp_path)
    r = cli("capacity", run.run_id, "--results-dir", str(tmp_path), "--slo", "tps_p50>=1000", "--json")
    m = json.loads(r.output)["models"]["m"]
    assert m["max_concurrency"] is None
    assert m["sentence"].startswith("m on this machine: ≥ 1000 tok/s per user (p50) does not hold even at 1 concurrent")


@pytest.mark.parametrize("slo, message", [
    ("latency_p95<=1", "is not TERM_pNN<=NUMBER"), ("ttft_p90<=1", "NN one of 50, 95, 99"),
    ("ttft_p95<1", "is not TERM_pNN"), ("ttft_p95<=", "is not TERM_pNN"), (",", "an empty SLO"),
])
def test_a_malformed_slo_is_a_one_line_error(slo, message):
    from bench.analysis.capacity import parse_slo

    with pytest.raises(ConfigError, match=message):
        parse_slo(slo)


def test_capacity_of_a_run_without_levels_says_how_to_measure_them(server, tmp_path):
    server.set_model("m", Script())
    from tests.conftest import collect

    out = collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path)
    r = cli("capacity", out.run.run_id, "--results-dir", str(tmp_path), "--slo", "ttft_p95<=1")
    assert r.exit_code == 1 and "has no load levels: measure them with bench collect --concurrency" in r.stderr


def test_a_serial_runtime_is_said_to_queue_not_batch(tmp_path):
    import json

    run = _capacity_run(tmp_path)
    path = next(tmp_path.glob("*.json"))
    data = json.loads(path.read_text())
    data["models"]["m"]["runtime"] = "foundry"
    path.write_text(json.dumps(data))
    m = json.loads(cli("capacity", run.run_id, "--results-dir", str(tmp_path), "--slo", "itl_p95<=0.015",
                       "--json").output)["models"]["m"]
    assert m["sentence"].endswith("(Foundry Local serves one request at a time by design: more users queue)")


def test_the_run_page_shows_each_load_level(tmp_path):
    from bench.report.render import render

    with FakeServer({"m": Script(itl_s=0.01, capacity=S)}) as srv:
        run = _run(srv, [S, 2 * S], results_dir=tmp_path / "results")
    render(tmp_path / "results", tmp_path / "site")
    page = (tmp_path / "site" / "report" / "runs").glob("*.md")
    text = next(p for p in page if p.name != "index.md").read_text()
    assert "**Per load level**" in text
    rows = [line for line in text.splitlines() if line.startswith(f"| {S} streams | ") or
            line.startswith(f"| {2 * S} streams | ")]
    assert len(rows) == 2 and rows[0].split(" | ")[2] == "16" and rows[1].split(" | ")[0] == f"| {2 * S} streams"
    assert run.run_id in text


def _open(srv, rates, n=20, tmp_path=None, **kw):
    extra = {"results_dir": tmp_path} if tmp_path else {}
    plan, writer = runner.prepare(resolve(None, env={}, endpoint=srv.url, models="m", rate=rates,
                                          requests_per_level=n, **extra, **kw))
    return store.load_run(runner.collect(plan, writer, env={}, sleep=lambda s: None).path)


def test_open_loop_sends_at_the_rate_and_records_each_samples_dispatch_lag():
    with FakeServer({"m": Script(itl_s=0.005)}) as srv:
        run = _open(srv, [20.0])
    measured = [s for s in run.samples if not s.warmup]
    assert len(measured) == 20 and all(s.ok and s.scenario["rate"] == 20.0 for s in measured)
    assert all(0 <= s.scenario["lag_s"] < 0.05 for s in measured)  # sent on time
    [level] = levels(run, "m")
    assert level.rate == 20.0 and level.concurrency is None and level.dropped == 0
    assert 8 < level.requests_per_s < 40  # Poisson arrivals at 20/s over 20 requests
    assert run.workload.scenario == {"name": "rate", "rates": [20.0], "requests_per_level": 20, "max_in_flight": 256,
                                     "seed": 42}


def test_arrivals_over_the_in_flight_cap_are_dropped_never_delayed():
    with FakeServer({"m": Script(itl_s=0.02)}) as srv:  # 20 tokens: 0.4 s per request
        run = _open(srv, [50.0], n=20, max_in_flight=1)
        sent = len([r for r in srv.requests if r["path"] == "/v1/chat/completions"])
    dropped = [s for s in run.samples if s.error == "dropped"]
    assert dropped and not any(s.warmup for s in dropped)
    assert dropped[0].error_detail == "arrived while 1 requests were in flight (the cap): not sent"
    assert sent == len([s for s in run.samples if s.error != "dropped"])  # a dropped arrival sent nothing
    [level] = levels(run, "m")
    assert level.dropped == len(dropped) and level.n == 20


def test_capacity_gives_the_largest_rate_within_the_slo(tmp_path):
    import json

    with FakeServer({"m": Script(itl_s=0.01, capacity=2)}) as srv:
        run = _open(srv, [2.0, 40.0], n=16, tmp_path=tmp_path, max_in_flight=8)
    r = cli("capacity", run.run_id, "--results-dir", str(tmp_path), "--slo", "itl_p95<=0.015", "--json")
    m = json.loads(r.output)["models"]["m"]
    assert m["max_rate"] == 2.0 and m["max_concurrency"] is None
    assert m["sentence"] == "m on this machine: ITL p95 ≤ 15 ms up to 2 requests/s"


def test_the_run_page_draws_the_sweep_with_the_slo_line(tmp_path):
    from bench.report.render import render

    with FakeServer({"m": Script(itl_s=0.01, capacity=S)}) as srv:
        _run(srv, [1, S, 2 * S], n=8, results_dir=tmp_path / "results")
    render(tmp_path / "results", tmp_path / "site", slo="itl_p95<=0.015")
    text = next(p for p in (tmp_path / "site" / "report" / "runs").glob("*.md") if p.name != "index.md").read_text()
    svg = text[text.index("m: throughput against inter-token latency"):]
    svg = svg[:svg.index("</svg>")]
    assert svg.count("<circle") == 3 and "4 streams: output tokens/s" in svg
    assert "SLO: ITL p95 ≤ 15 ms" in svg and 'stroke-dasharray="6 4"' in svg
    _, problems = render(tmp_path / "results", tmp_path / "site2", slo="itl_p95<<1")  # a problem, never a crash
    assert any(p.message.startswith("slo: SLO term 'itl_p95<<1' is not") for p in problems)


def test_home_and_selection_pages_say_how_many_users_each_model_serves(tmp_path):
    from bench.report.render import render

    with FakeServer({"m": Script(itl_s=0.01, capacity=S)}) as srv:
        run = _run(srv, [1, S, 2 * S], n=8, results_dir=tmp_path / "results")
    render(tmp_path / "results", tmp_path / "site", slo="itl_p95<=0.015")
    home = (tmp_path / "site" / "index.md").read_text()
    assert "## How many users" in home
    assert "- m on this machine: ITL p95 ≤ 15 ms up to 4 concurrent users; throughput stops growing past 4 streams." \
        in home
    selection = (tmp_path / "site" / "report" / "selection.md").read_text()
    from bench.report.format import slug

    assert f"[run {run.run_id}](runs/{slug(run.run_id)}.md)" in selection
    assert "| m | 4 | – | 4 streams | m on this machine: ITL p95 ≤ 15 ms up to 4 concurrent users |" in selection
    render(tmp_path / "results", tmp_path / "site3")  # no slo: the home page says how to get the sentence
    assert "set `slo:` in bench.yaml" in (tmp_path / "site3" / "index.md").read_text()


def test_export_of_a_sweep_gives_a_row_per_level_and_the_report_lists_the_levels(tmp_path, monkeypatch):
    import csv

    with FakeServer({"m": Script(itl_s=0.005)}) as srv:
        run = _run(srv, [1, 2], n=6, results_dir=tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    r = cli("export", run.run_id, "--results-dir", str(tmp_path / "results"), "--format", "sweep")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((tmp_path / "benchmark_sweep.csv").open()))
    assert [(x["model"], x["concurrency"], x["requests"], x["errors"]) for x in rows] == [("m", "1", "6", "0"),
                                                                                        ("m", "2", "6", "0")]
    assert float(rows[1]["achieved_concurrency"]) > 1.2 and float(rows[0]["itl_p95_s"]) > 0
    assert cli("export", run.run_id, "--results-dir", str(tmp_path / "results")).exit_code == 0
    report = (tmp_path / "benchmark_report.md").read_text()
    assert "## Load levels" in report and "| m | 2 streams |" in report


def test_export_sweep_of_a_sequential_run_says_how_to_measure_levels(server, tmp_path):
    from tests.conftest import collect

    server.set_model("m", Script())
    out = collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path)
    r = cli("export", out.run.run_id, "--results-dir", str(tmp_path), "--format", "sweep")
    assert r.exit_code == 1 and "has no load levels" in r.stderr


def test_bench_show_lists_a_sweeps_levels(tmp_path):
    with FakeServer({"m": Script(itl_s=0.002)}) as srv:
        run = _run(srv, [1, 2], n=4, results_dir=tmp_path)
    r = cli("show", run.run_id, "--results-dir", str(tmp_path), env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "per load level" in r.output and "2 streams" in r.output and "1 stream " in r.output
