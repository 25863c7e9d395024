"""The command line: bad input gets one clean line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.results import store
from bench.results.schema import SCHEMA_VERSION
from tests.conftest import Script, cli, collect, read_json

ROOT = Path(__file__).resolve().parent.parent


def no_traceback(result):
    assert "Traceback" not in result.output and "Traceback" not in (result.stderr or "")


def test_collect_then_show(server):
    server.set_model("m1", Script(ttft_s=0.02, itl_s=0.002))
    server.set_model("m2", Script(ttft_s=0.01, itl_s=0.001, send_usage=False))
    r = cli("collect", "--endpoint", server.url, "--models", "m1,m2", "--rounds", "1", "--quiet")
    assert r.exit_code == 0, r.output
    assert "wrote results/" in r.stderr and "(complete)" in r.stderr
    files = list(Path("results").glob("*.json"))
    assert len(files) == 1
    r = cli("show")
    assert r.exit_code == 0 and "m1" in r.stdout and "m2" in r.stdout
    r = cli("show", "latest", "--json")
    data = json.loads(r.stdout)
    assert data["models"]["m1"]["ok"] == 4 and data["models"]["m2"]["tokens_sources"] == ["chunks"]
    assert data["models"]["m1"]["ttft"]["p50"] > 0.015


def test_env_configures_collect(server, monkeypatch):
    server.set_model("m", Script())
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("BENCH_MODELS", "m")
    monkeypatch.setenv("BENCH_STREAM", "0")
    monkeypatch.setenv("BENCH_RESULTS_DIR", "elsewhere")
    r = cli("collect", "--rounds", "1", "--warmup", "0", "-q")
    assert r.exit_code == 0, r.output
    [path] = Path("elsewhere").glob("*.json")
    assert all(not s["stream"] for s in read_json(path)["samples"])


@pytest.mark.parametrize("setup,args,message,code", [
    (lambda: Path("bench.yaml").write_text("models: [\n"), ["collect"], r"bench.yaml:\d+:\d+: malformed YAML", 2),
    (lambda: Path("bench.yaml").write_text("endpoint: x\n"), ["collect"], "unknown key 'endpoint'", 2),
    (None, ["collect", "--endpoint", "http://127.0.0.1:9/v1", "--models", "m", "--rounds", "0"],
     "rounds must be at least 1", 2),
    (None, ["collect", "--endpoint", "ftp://x", "--models", "m"], "http:// or https://", 2),
    (None, ["collect", "--models", "m"], "no endpoint for model 'm': pass --endpoint", 2),
    (None, ["show"], "run `bench collect` first", 1),
    (None, ["collect", "--resume", "nope", "--endpoint", "http://127.0.0.1:9/v1"], "no run 'nope'", 1),
])
def test_bad_input_is_one_clean_line(setup, args, message, code):
    if setup:
        setup()
    r = cli(*args)
    no_traceback(r)
    assert r.exit_code == code, r.output
    assert "error:" in r.stderr
    import re
    assert re.search(message, r.stderr.replace("\n", " ")), r.stderr


def test_unreachable_endpoint_records_and_exits_nonzero():
    r = cli("collect", "--endpoint", "http://127.0.0.1:9/v1", "--models", "m", "-q")
    no_traceback(r)
    assert r.exit_code == 1
    assert "cannot reach http://127.0.0.1:9/v1" in r.stderr
    [path] = Path("results").glob("*.json")
    run = store.load_run(path)
    assert run.models["m"].status == "skipped" and run.status == "partial"


def test_unwritable_results_dir_is_refused_before_any_request(server):
    Path("blocker").write_text("")
    server.set_model("m", Script())
    r = cli("collect", "--endpoint", server.url, "--models", "m", "--results-dir", "blocker/sub")
    no_traceback(r)
    assert r.exit_code == 1 and "not writable" in r.stderr
    assert not [q for q in server.requests if q["path"].endswith("/chat/completions")]


def test_resume_refuses_corrupt_and_newer_files():
    Path("results").mkdir()
    Path("results/20260101T000000.000Z-aaaaaa.json").write_text("{not json")
    r = cli("collect", "--resume", "20260101T000000.000Z-aaaaaa")
    no_traceback(r)
    assert r.exit_code == 1 and "corrupt results file" in r.stderr
    Path("results/20260101T000000.000Z-bbbbbb.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    r = cli("collect", "--resume", "20260101T000000.000Z-bbbbbb")
    assert r.exit_code == 1 and "upgrade bench" in r.stderr


def test_models_checklist(server):
    server.set_model("good", Script())
    server.set_model("broken", Script(status=500))
    r = cli("models", "--endpoint", server.url, "--models", "good,broken,ghost")
    no_traceback(r)
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert any("✓" in l and "good" in l and "answered" in l for l in lines)
    assert any("✗" in l and "broken" in l and "server_error" in l for l in lines)
    assert any("✗" in l and "ghost" in l for l in lines)
    r = cli("models", "--endpoint", server.url, "--models", "good")
    assert r.exit_code == 0


def test_models_checklist_unreachable():
    r = cli("models", "--endpoint", "http://127.0.0.1:9/v1")
    assert r.exit_code == 1 and "✗" in r.stdout and "cannot reach" in r.stdout.replace("\n", " ")


def _bench(*args: str, env: dict | None = None) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env)


def _measured(path: Path) -> int:
    """Measured requests saved so far (the run file folded with its journal, as bench loads it)."""
    try:
        return sum(1 for s in store.load_run(path).samples if not s.warmup)
    except Exception:  # noqa: BLE001 - a file mid-creation
        return -1


def test_kill_9_keeps_every_finished_request_and_resume_completes_it(server):
    server.set_model("m", Script(ttft_s=0.05, itl_s=0.01))  # about 0.25 s a request
    proc = _bench("collect", "--endpoint", server.url, "--models", "m", "--rounds", "3", "-q")
    deadline = time.monotonic() + 60
    path = None
    while time.monotonic() < deadline:
        files = list(Path("results").glob("*.json")) if Path("results").exists() else []
        if files and _measured(files[0]) >= 3:
            path = files[0]
            break
        time.sleep(0.02)
    assert path is not None, "the run wrote nothing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    # The file on disk is valid and holds every request finished before the kill.
    run = store.load_run(path)
    assert run.status == "running"
    done = [s for s in run.samples if not s.warmup]
    assert 3 <= len(done) < 12 and all(s.ok for s in done)
    kept = {(s.prompt_id, s.round): s.started_at for s in done}
    r = cli("collect", "--resume", run.run_id, "--endpoint", server.url, "-q")
    assert r.exit_code == 0, r.stderr
    run2 = store.load_run(path)
    assert run2.status == "complete"
    measured = [s for s in run2.samples if not s.warmup]
    assert len(measured) == 12
    assert len({(s.prompt_id, s.round) for s in measured}) == 12  # nothing run twice
    assert all(any(s.started_at == kept[k] for s in measured if (s.prompt_id, s.round) == k) for k in kept)
    assert sum(1 for s in run2.samples if s.warmup) == 2  # the resumed session warms up again


def test_resume_asks_for_a_url_whose_query_was_not_stored(server):
    server.set_model("m", Script(ttft_s=0.01))
    path = collect(server, "m", rounds=1, warmup=0, endpoint=server.url + "?api-version=1").path
    data = read_json(path)
    data["status"] = "interrupted"
    data["samples"] = data["samples"][:1]
    path.write_text(json.dumps(data))
    r = cli("collect", "--resume", path.stem, "-q")
    assert r.exit_code == 2 and "resume with --endpoint URL" in r.stderr
    r = cli("collect", "--resume", path.stem, "--endpoint", server.url + "?api-version=1", "-q")
    assert r.exit_code == 0, r.stderr
    assert len(read_json(path)["samples"]) == 4


def test_sigterm_marks_the_run_interrupted(server):
    server.set_model("m", Script(ttft_s=0.05, itl_s=0.01))
    proc = _bench("collect", "--endpoint", server.url, "--models", "m", "--rounds", "5", "-q")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        files = list(Path("results").glob("*.json")) if Path("results").exists() else []
        if files and _measured(files[0]) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in stderr and "bench collect --resume" in stderr
    [path] = Path("results").glob("*.json")
    assert store.load_run(path).status == "interrupted"


def test_resume_of_a_complete_run_says_nothing_to_do(server):
    server.set_model("m", Script())
    out = collect(server, "m", rounds=1, warmup=0)
    r = cli("collect", "--resume", out.run.run_id, "--endpoint", server.url)
    assert r.exit_code == 1 and "already complete" in r.stderr


def test_api_key_canary_never_reaches_results(server, monkeypatch):
    canary = "sk-canary-0123456789abcdefghijklmnop"
    server.api_key = canary  # the server insists on it: the key is really sent
    server.set_model("m", Script())
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    r = cli("collect", "--endpoint", server.url + "?api-key=" + canary, "--models", "m", "--rounds", "1", "-q")
    assert r.exit_code == 0, r.stderr
    auth = [q["headers"].get("authorization") for q in server.requests if "/chat/completions" in q["path"]]
    assert auth and all(a == f"Bearer {canary}" for a in auth)
    for path in Path("results").rglob("*"):
        if path.is_file():
            assert canary not in path.read_text(errors="replace"), path
    assert canary not in r.stdout + r.stderr
