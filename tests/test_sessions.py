"""--sessions (the matrix repeated, a fresh embedded server each) and the interleaved order of
prompts within rounds (slow drift of the machine must not look like a difference of prompts)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.config import resolve
from bench.measure import runner
from bench.measure.scenarios.sequential import Sequential, round_order
from bench.results import store
from tests.conftest import Script, cli, collect
from tests.fake_server import FakeServer

SMOL = "smollm2-135m-instruct"


def test_sessions_repeat_the_matrix_with_a_warmup_each_and_keep_the_workload(server):
    server.set_model("m", Script(ttft_s=0.005, itl_s=0.001))
    one = collect(server, "m", rounds=2, warmup=1).run
    three = collect(server, "m", rounds=2, warmup=1, sessions=3).run
    measured = [s for s in three.samples if not s.warmup]
    assert len(measured) == 3 * len([s for s in one.samples if not s.warmup]) == 3 * 2 * 4
    assert sorted({s.session for s in measured}) == [0, 1, 2]
    assert [s.session for s in three.samples if s.warmup] == [0, 1, 2]  # a warmup per session
    assert len({(s.session, s.prompt_id, s.round) for s in measured}) == len(measured)
    assert three.workload.hash == one.workload.hash and three.config["sessions"] == 3
    assert three.status == "complete" and store.load_run(collect(server, "m", rounds=1).path).config["sessions"] == 1


def test_each_session_of_an_embedded_model_gets_its_own_server(monkeypatch, server):
    # A session is one call of _run_embedded, which starts the model's server and always stops it.
    calls = []
    monkeypatch.setattr(runner, "preflight", lambda plan, run, todo: {m.key: Path("m.gguf") for m in plan.models})

    def fake_run_embedded(job, path, env):
        calls.append(sorted({c.session for c in job.cells}))
        job.info.status = "ok"

    monkeypatch.setattr(runner, "_run_embedded", fake_run_embedded)
    plan = resolve(None, env={}, models=SMOL, rounds=1, warmup=0, sessions=3, results_dir=Path("r"))
    assert plan.uses_embedded
    plan, writer = runner.prepare(plan)
    runner.collect(plan, writer, env={}, sleep=lambda s: None)
    assert calls == [[0], [1], [2]]


def test_prompts_are_shuffled_per_round_reproducibly_and_models_stay_in_blocks(server):
    server.set_model("a", Script())
    server.set_model("b", Script())
    prompts = [{"id": f"p{i}", "text": f"Prompt {i}."} for i in range(6)]
    Path("prompts.json").write_text(json.dumps(prompts))
    run = collect(server, "a,b", rounds=4, warmup=0, prompts=Path("prompts.json"), sessions=2).run
    models = [s.model for s in run.samples]
    assert models == sorted(models)  # all of a, then all of b
    for model in ("a", "b"):
        mine = [s for s in run.samples if s.model == model]
        by_round = {}
        for s in mine:
            by_round.setdefault((s.session, s.round), []).append(s.prompt_id)
        orders = list(by_round.values())
        assert all(sorted(o) == [p["id"] for p in prompts] for o in orders)  # every prompt once a round
        assert len({tuple(o) for o in orders}) > 1  # the order changes between rounds
        seed = run.workload.generation["seed"]  # the order's seed is the run's recorded seed
        assert orders == [[f"p{i}" for i in round_order(6, seed, s, r)] for s in range(2) for r in range(4)]
    assert round_order(6, 0, 0, 0) == round_order(6, 0, 0, 0) and round_order(20, 1, 0, 0) != round_order(20, 2, 0, 0)


def test_the_order_depends_only_on_seed_session_and_round():
    plan = resolve(None, env={}, endpoint="http://127.0.0.1:9/v1", models="m", rounds=3, sessions=2)
    cells = Sequential().cells(plan)
    assert [(c.session, c.round) for c in cells] == [(s, r) for s in range(2) for r in range(3) for _ in plan.prompts]
    assert [c.prompt.id for c in cells[:4]] == [plan.prompts[i].id for i in round_order(4, plan.generation.seed or 0, 0, 0)]


def test_sessions_flag_and_yaml_key_are_checked():
    r = cli("collect", "--endpoint", "http://127.0.0.1:9/v1", "--models", "m", "--sessions", "0")
    assert r.exit_code == 2 and "--sessions must be a whole number from 1 to 100" in r.output
    r = cli("collect", "--endpoint", "http://127.0.0.1:9/v1", "--models", "m", "--sessions", "2", "--concurrency", "1,2")
    assert r.exit_code == 2 and "--sessions repeats the sequential matrix" in r.output
    Path("bench.yaml").write_text("sessions: many\n")
    r = cli("collect", "--endpoint", "http://127.0.0.1:9/v1", "--models", "m")
    assert r.exit_code == 2 and "sessions" in r.output and "Traceback" not in r.output


def test_bench_diff_takes_run_to_run_noise_from_sessions():
    def run(seed: int):
        with FakeServer(seed=seed) as srv:
            srv.set_model("m", Script(ttft_s=0.02, itl_s=0.002, tokens=[f"t{i} " for i in range(8)], noise_run=0.04,
                                      noise_request=0.02))
            return collect(srv, "m", rounds=2, warmup=0, sessions=3, results_dir=Path(f"s{seed}")).path

    a, b = run(1), run(2)
    r = cli("diff", str(a), str(b), "--format", "json")
    assert r.exit_code == 0, r.output
    rows = [row for row in json.loads(r.stdout)["rows"] if row["metric"] == "ttft"]
    # Within one fake server the per-start factor is fixed, so sessions see only request noise here;
    # what matters is that they are counted as the source.
    assert rows and rows[0]["basis"] == "6 sessions"
