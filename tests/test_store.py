"""Run files: atomic, never overwritten, versioned; the shipped JSON Schema matches the code."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from bench.errors import ResultsError
from bench.results import journal, store
from bench.results.schema import SCHEMA_VERSION, schema_text
from tests.conftest import Script, collect


def test_shipped_json_schema_is_current():
    shipped = (resources.files("bench.results") / "schemas" / "run.schema.json").read_text()
    assert shipped == schema_text(), "regenerate: python -m bench.results.schema > bench/results/schemas/run.schema.json"


def test_results_file_validates_against_the_schema(server):
    server.set_model("m", Script(itl_s=0.001))
    server.enqueue("m", Script(truncate_after=1))
    out = collect(server, "m", rounds=1, warmup=1)
    data = json.loads(out.path.read_text())
    jsonschema.validate(data, json.loads(schema_text()))
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["status"] == "complete"
    assert data["run_id"] == out.path.stem
    for key in ("started_at", "ended_at", "bench_version", "git", "machine", "endpoints", "models",
                "config", "workload", "samples"):
        assert key in data
    s = data["samples"][1]
    for key in ("model", "prompt_id", "round", "warmup", "ok", "error", "ttft_s", "e2e_s", "itl_s",
                "completion_tokens", "prompt_tokens", "tokens_source", "finish_reason", "output"):
        assert key in s
    assert data["samples"][0]["warmup"] and data["samples"][0]["error"] == "truncated"
    assert data["endpoints"][0]["models"] == ["m"]
    assert data["models"]["m"]["resolved_id"] == "m"
    assert data["machine"]["cores_logical"] >= 1 and data["machine"]["ram_bytes"] > 0


def test_run_ids_are_unique_and_sort_by_time():
    from datetime import datetime, timedelta, timezone

    ids = [store.new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    t = datetime(2026, 1, 1, 23, 59, 59, 999000, tzinfo=timezone.utc)
    times = [t + timedelta(milliseconds=k) for k in (0, 1, 2, 1000, 86_400_000)]
    timed = [store.new_run_id(x) for x in times]
    assert sorted(timed) == timed


def test_workload_hash_depends_on_prompts_and_params_only():
    p = [{"id": "a", "text": "x"}]
    g = {"max_tokens": 10, "temperature": 0, "seed": 1, "stream": True}
    assert store.workload(p, g).hash == store.workload(p, dict(g)).hash
    assert store.workload(p, g).hash != store.workload(p, {**g, "max_tokens": 11}).hash
    assert store.workload(p, g).hash != store.workload([{"id": "a", "text": "y"}], g).hash


def test_an_existing_run_file_is_never_overwritten(server, tmp_path):
    server.set_model("m", Script())
    out = collect(server, "m", rounds=1, warmup=0)
    before = out.path.read_text()
    with pytest.raises(ResultsError, match="refusing to overwrite"):
        journal.RunWriter(out.path, out.run, new=True)
    assert out.path.read_text() == before
    assert not [p for p in out.path.parent.iterdir() if p.name.startswith(".")]


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_corrupt_and_newer_files_are_refused_with_the_file_named(tmp_path):
    bad = _write(tmp_path / "r" / "bad.json", '{"schema_version": 1, "run_id": ')
    with pytest.raises(ResultsError, match=r"bad\.json:1: corrupt results file"):
        store.load_run(bad)
    newer = _write(tmp_path / "r" / "new.json", {"schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(ResultsError, match=r"new\.json: written by a newer bench .* upgrade bench"):
        store.load_run(newer)
    other = _write(tmp_path / "r" / "other.json", [1, 2])
    with pytest.raises(ResultsError, match="not a bench results file"):
        store.load_run(other)
    runs, problems = store.load_all(tmp_path / "r")
    assert runs == [] and {p.path.name for p in problems} == {"bad.json", "new.json", "other.json"}


def test_find_run_by_id_prefix_latest_and_path(server):
    server.set_model("m", Script())
    a = collect(server, "m", rounds=1, warmup=0).path
    b = collect(server, "m", rounds=1, warmup=0).path
    rdir = a.parent
    assert store.find_run(rdir, "latest") == b
    assert store.find_run(rdir, a.stem) == a
    assert store.find_run(rdir, str(b)) == b
    with pytest.raises(ResultsError, match="no run 'zzz'"):
        store.find_run(rdir, "zzz")
    with pytest.raises(ResultsError, match="matches 2 runs"):
        store.find_run(rdir, a.stem[:4])


def test_unwritable_results_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ResultsError, match="not writable.*--results-dir"):
        store.ensure_writable(blocker / "results")


def test_committed_default_runs_keep_their_workload_hash_and_stay_comparable():
    """Schema 4 adds the scenario; the sequential matrix is left out of the hash, so the committed
    runs (schema 1-3) keep theirs, and a new default run hashes like the latest of them."""
    from bench.analysis.compare import Side, diff
    from bench.config import resolve
    from bench.measure.scenarios import get

    root = Path(__file__).resolve().parent.parent / "results"
    committed = sorted(root.glob("*.json"))
    assert committed, "the repository ships default runs in results/"
    for path in committed:
        stored = json.loads(path.read_text())["workload"]["hash"]
        run = store.load_run(path)
        assert run.workload.hash == stored and run.workload.scenario == {"name": "sequential"}
        recomputed = store.workload(run.workload.prompts, run.workload.generation,
                                    "cold" if run.workload.prompt_cache == "unknown" else run.workload.prompt_cache)
        if run.workload.prompt_cache != "unknown":  # v1/v2 hashes predate the prompt-cache field
            assert recomputed.hash == stored
    latest = store.load_run(committed[-1])
    plan = resolve(None, env={})  # the default embedded plan: the workload `bench collect` measures
    new = store.workload([p.model_dump(exclude_none=True) for p in plan.prompts], plan.generation.model_dump(),
                         plan.prompt_cache, get(plan.scenario).params())
    assert new.hash == latest.workload.hash
    d = diff(Side("a", {m: latest for m in latest.models}), Side("b", {m: latest for m in latest.models}))
    assert d.rows and all(r.status != "not comparable" for r in d.rows)
    other = store.workload([p.model_dump(exclude_none=True) for p in plan.prompts], plan.generation.model_dump(),
                           plan.prompt_cache, {"name": "closed-loop", "concurrency": [1, 4]})
    assert other.hash != new.hash  # any other scenario is a different workload


def test_a_version_4_run_loads_with_no_server_timings():

    committed = Path(__file__).resolve().parent.parent / "results" / "20261122T125050.975Z-7d4b95.json"
    assert json.loads(committed.read_text())["schema_version"] == 4
    run = store.load_run(committed)
    assert run.schema_version == SCHEMA_VERSION == 6
    assert run.samples and all(s.server is None for s in run.samples)
