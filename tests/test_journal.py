"""The run journal, the run lock and resume: nothing measured is lost, nothing is trusted from a
run file that decides where requests (and keys) go."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.results import journal, store
from tests.conftest import cli, collect, read_json
from tests.fake_server import FakeServer, Script

ROOT = Path(__file__).resolve().parent.parent
CANARY = "ghp_canary_0123456789abcdef"


def _interrupt(path: Path, keep: int = 1, **config_edits) -> dict:
    """Make a finished run look interrupted after `keep` samples (as a crash, or a planted file)."""
    data = read_json(path)
    data["status"] = "interrupted"
    data["samples"] = data["samples"][:keep]
    for e in data["config"]["endpoints"]:
        e.update(config_edits)
    path.write_text(json.dumps(data))
    return data


def _chat_requests(srv: FakeServer) -> list[dict]:
    return [r for r in srv.requests if r["path"].endswith("/chat/completions")]


def test_resume_never_sends_requests_or_keys_where_a_run_file_says(tmp_path):
    good, evil = FakeServer({"m": Script(tokens=["x "])}), FakeServer({"m": Script(tokens=["x "])})
    with good, evil:
        path = collect(good, "m", rounds=2, warmup=0).path
        _interrupt(path, base_url=evil.url, api_key_env="GITHUB_TOKEN")
        env = {"GITHUB_TOKEN": CANARY}
        r = cli("collect", "--resume", path.stem, "-q", env=env)
        assert r.exit_code == 2 and "never from a results file" in r.stderr and "--endpoint URL" in r.stderr
        r = cli("collect", "--resume", path.stem, "--endpoint", good.url, "-q", env=env)
        assert r.exit_code == 0, r.stderr
        assert f"the run file says {evil.url}" in r.stderr and f"using {good.url}" in r.stderr
        assert evil.requests == [], "a planted run file sent bench to another server"
        for req in good.requests:
            assert CANARY not in json.dumps(dict(req["headers"])), "a key named by the run file was sent"
    assert store.load_run(path).status == "complete"


def test_resume_refuses_a_model_file_named_only_by_the_run_file(server):
    server.set_model("m", Script())
    path = collect(server, "m", rounds=1, warmup=0).path
    data = _interrupt(path, keep=0)
    data["config"]["models"] = [{"name": "m", "path": "/tmp/planted.gguf"}]
    path.write_text(json.dumps(data))
    r = cli("collect", "--resume", path.stem, "--endpoint", server.url, "-q")
    assert r.exit_code == 2 and "comes from the run file" in r.stderr and "Traceback" not in r.stderr


def _bench(*args: str, env: dict | None = None) -> subprocess.Popen:
    full = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)


def test_two_resumes_of_one_run_never_run_a_cell_twice(tmp_path):
    with FakeServer({"m": Script(tokens=["x "])}) as srv:
        path = collect(srv, "m", rounds=6, warmup=0).path
        _interrupt(path, keep=2)
        srv.set_model("m", Script(tokens=["x "], ttft_s=0.05))
        before = len(_chat_requests(srv))
        procs = [_bench("collect", "--resume", path.stem, "--endpoint", srv.url, "--results-dir", "results", "-q")
                 for _ in range(2)]
        results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
        sent = len(_chat_requests(srv)) - before
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 75], results
    loser = next(err for _, err, code in results if code == 75)
    assert f"run {path.stem} is being written by pid" in loser and "bench collect --resume" in loser
    run = store.load_run(path)
    measured = [s for s in run.samples if not s.warmup]
    assert len(measured) == 24 and len({(s.prompt_id, s.round) for s in measured}) == 24
    assert sent == 22  # exactly the missing cells (the run has no warmup): nothing twice


def test_judge_waits_its_turn_while_a_resume_writes(tmp_path):
    with FakeServer({"m": Script(tokens=["x "]), "judge": Script(tokens=["SCORE: 4"])}) as srv:
        path = collect(srv, "m", rounds=4, warmup=0).path
        _interrupt(path, keep=1)
        srv.set_model("m", Script(tokens=["x "], ttft_s=0.2))
        proc = _bench("collect", "--resume", path.stem, "--endpoint", srv.url, "-q")
        lock, deadline = Path(".bench/locks") / f"{path.stem}.lock", time.monotonic() + 30
        while time.monotonic() < deadline and "--resume" not in (lock.read_text() if lock.exists() else ""):
            time.sleep(0.02)
        r = cli("judge", path.stem, "--endpoint", srv.url, "--model", "judge")
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert r.exit_code == 75 and "is being written by pid" in r.stderr
        run = store.load_run(path)
        assert len([s for s in run.samples if not s.warmup]) == 16 and run.status == "complete"
        r = cli("judge", path.stem, "--endpoint", srv.url, "--model", "judge")  # its turn now
        assert r.exit_code == 0 and "is being written" not in r.stderr
    assert store.load_run(path).judgements


def test_a_run_is_journaled_then_folded_into_one_file(server):
    server.set_model("m", Script(tokens=["x "]))
    out = collect(server, "m", rounds=2, warmup=1)
    assert not journal.journal_path(out.path).exists(), "the journal is folded and removed at the end"
    data = read_json(out.path)
    assert data["status"] == "complete" and len(data["samples"]) == 1 + 8


def test_a_crash_leaves_the_journal_and_loading_folds_it(server):
    server.set_model("m", Script(tokens=["x "]))
    plan_out = collect(server, "m", rounds=1, warmup=0)
    run = plan_out.run
    # As a crash would leave it: the header file, and the requests only in the journal.
    header = run.model_copy(deep=True)
    header.samples, header.status = [], "running"
    plan_out.path.write_text(store.run_text(header))
    jp = journal.journal_path(plan_out.path)
    jp.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"sample": s.model_dump(mode="json")}) for s in run.samples]
    jp.write_text("\n".join(lines) + "\n" + '{"sample": {"torn')  # the last write was cut short
    loaded = store.load_run(plan_out.path)
    assert len(loaded.samples) == 4 and loaded.status == "running"


def test_resume_retries_cells_that_failed_for_transient_reasons(server):
    server.set_model("m", Script(status=500))  # server_error after the retries
    first = collect(server, "m", rounds=1, warmup=0)
    assert first.run.status == "partial" and not any(s.ok for s in first.run.samples)
    assert {s.error for s in first.run.samples} == {"server_error"}
    server.set_model("m", Script(tokens=["x "]))
    r = cli("collect", "--resume", first.path.stem, "--endpoint", server.url, "-q")
    assert r.exit_code == 0, r.stderr
    run = store.load_run(first.path)
    assert run.status == "complete"
    ok = [s for s in run.samples if s.ok]
    failed = [s for s in run.samples if not s.ok and not s.warmup]
    assert len(ok) == 4 and failed, "the earlier failed attempts are kept"


def test_a_second_ctrl_c_cannot_cut_the_final_fold_short(server, monkeypatch):
    server.set_model("m", Script(tokens=["x "]))
    out = collect(server, "m", rounds=1, warmup=0)
    run = store.load_run(out.path)
    run.status = "interrupted"
    writer = journal.RunWriter(out.path, run, new=False, journal=True)
    real = store.atomic_write

    def interrupted_write(path, text, **kw):
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C again, mid-save
        return real(path, text, **kw)

    monkeypatch.setattr(store, "atomic_write", interrupted_write)
    writer.finish()
    assert read_json(out.path)["status"] == "interrupted"


def test_a_planted_journal_symlink_is_never_written_through(server, tmp_path):
    server.set_model("m", Script(tokens=["x "]))
    path = collect(server, "m", rounds=1, warmup=0).path
    _interrupt(path, keep=1)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    jp = journal.journal_path(path)
    jp.parent.mkdir(parents=True, exist_ok=True)
    jp.symlink_to(victim)
    cli("collect", "--resume", path.stem, "--endpoint", server.url, "-q")
    assert victim.read_text() == "precious"


def test_collect_into_another_results_dir_leaves_the_projects_pages_alone(server):
    server.set_model("m", Script(tokens=["x "]))
    Path("site_src").mkdir()
    r = cli("collect", "--endpoint", server.url, "--models", "m", "--rounds", "1", "--results-dir", "elsewhere")
    assert r.exit_code == 0, r.stderr
    assert "pages not rendered" in r.stderr and "bench render --results-dir elsewhere" in r.stderr
    assert not any(Path("site_src").iterdir())


def test_results_files_are_readable_by_the_team(server):
    """mkstemp creates 0600 files: teammates sharing a checkout could not read a run."""
    server.set_model("m", Script(tokens=["x "]))
    old = os.umask(0o022)
    try:
        out = collect(server, "m", rounds=1, warmup=0)
    finally:
        os.umask(old)
    assert out.path.stat().st_mode & 0o777 == 0o644


def test_a_lock_holder_that_has_not_written_its_pid_yet_is_waited_for(tmp_path):
    # The holder locks, then writes "pid N (purpose)"; a reader that came in between waits for it.
    import os
    import threading

    from bench.results.journal import _holder

    path = tmp_path / "x.lock"
    path.write_text("")
    fd = os.open(path, os.O_RDWR)
    writer = threading.Timer(0.1, lambda: path.write_text("pid 42 (bench collect)"))
    writer.start()
    try:
        assert _holder(fd) == "pid 42 (bench collect)"
    finally:
        writer.join()
        os.close(fd)
    empty = tmp_path / "empty.lock"
    empty.write_text("")
    fd = os.open(empty, os.O_RDWR)
    try:
        assert _holder(fd, tries=2, wait_s=0.001) == "another bench process"
    finally:
        os.close(fd)
