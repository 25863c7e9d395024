"""Everything outside bench is untrusted: each bad input below ends in one clean ``error:`` line
and an exit code, never a traceback, and no message ever shows a secret from a URL.

The real CLI runs in-process (CliRunner with catch_exceptions=False): a traceback fails the test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Script, cli, collect

CANARY = "s3cr3t-CANARY-7f1d"


def one_error_line(r, code: int) -> str:
    """The run ended with exactly one 'error:' line on stderr and ``code``; returns that line."""
    assert "Traceback" not in r.output
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def no_canary(r) -> None:
    for text in (r.output, r.stdout, r.stderr):
        assert CANARY not in text, text


# ----------------------------------------------------------------------------- endpoint URLs

BAD_URLS = {
    "port out of range": (f"http://user:{CANARY}@127.0.0.1:99999/v1?api_key={CANARY}", "port 99999"),
    "port not a number": (f"http://user:{CANARY}@127.0.0.1:abc/v1?api_key={CANARY}", "port"),
    "bad IPv6 literal": (f"http://user:{CANARY}@[::1/v1?api_key={CANARY}", "IPv6"),
    "mistyped scheme": (f"htp://user:{CANARY}@host/v1?api_key={CANARY}", "http:// or https://"),
    "no scheme": (f"user:{CANARY}@host/v1?api_key={CANARY}", "http:// or https://"),
    "no host": (f"http://user:{CANARY}@/v1?api_key={CANARY}", "host"),
    "port zero": (f"http://user:{CANARY}@127.0.0.1:0/v1?api_key={CANARY}", "port 0"),
    "space in host": (f"http://user:{CANARY}@my host/v1?api_key={CANARY}", "space"),
    "bad IPv4 address": (f"http://user:{CANARY}@256.1.1.1/v1?api_key={CANARY}", "IPv4"),
    "non-ASCII host": (f"http://user:{CANARY}@ﬀ.example/v1?api_key={CANARY}", "punycode"),
}


@pytest.fixture
def a_run(server):
    """A partial run in ./results (judge and resume need one): 'gone' is not served."""
    server.set_model("m", Script())
    out = collect(server, "m,gone", rounds=1, warmup=0)
    assert out.run.status == "partial"
    return out


def _url_commands(url: str, run_id: str) -> dict[str, tuple[list[str], dict]]:
    return {
        "collect --endpoint": (["collect", "--endpoint", url, "--models", "m", "-q"], {}),
        "collect with OPENAI_BASE_URL": (["collect", "--models", "m", "-q"], {"OPENAI_BASE_URL": url}),
        "collect --resume --endpoint": (["collect", "--resume", run_id, "--endpoint", url, "-q"], {}),
        "models --endpoint": (["models", "--endpoint", url, "--models", "m"], {}),
        "judge --endpoint": (["judge", run_id, "--endpoint", url, "--model", "j"], {}),
    }


@pytest.mark.parametrize("case", BAD_URLS)
def test_bad_url_is_one_redacted_line_in_every_command(case, a_run):
    url, expected = BAD_URLS[case]
    for name, (args, env) in _url_commands(url, a_run.run.run_id).items():
        r = cli(*args, env=env)
        line = one_error_line(r, 2)
        no_canary(r)
        assert expected in line, (name, line)
        assert "http://HOST:PORT/v1" in line, (name, line)  # says what to pass instead


@pytest.mark.parametrize("case", BAD_URLS)
def test_bad_url_in_bench_yaml_is_one_redacted_line(case):
    url, expected = BAD_URLS[case]
    Path("bench.yaml").write_text(
        f"endpoints:\n  - name: lab\n    base_url: '{url}'\nmodels:\n  - name: m\n")
    for args in (["collect", "-q"], ["models"]):
        r = cli(*args)
        line = one_error_line(r, 2)
        no_canary(r)
        assert line.startswith("error: bench.yaml:3: endpoints.0.base_url:") and expected in line, line


def test_valid_url_with_credentials_never_shows_them(server):
    """The same canary in a URL that works, or points at a closed port: in no output, no file."""
    server.set_model("m", Script())
    good = server.url.replace("http://", f"http://user:{CANARY}@") + f"?api_key={CANARY}"
    closed = f"http://user:{CANARY}@127.0.0.1:9/v1?api_key={CANARY}"
    for url in (good, closed):
        for args in (["collect", "--endpoint", url, "--models", "m,absent", "--rounds", "1", "-q"],
                     ["models", "--endpoint", url, "--models", "m,absent"],
                     ["judge", "--endpoint", url, "--model", "j"]):
            r = cli(*args)
            assert "Traceback" not in r.output and r.exit_code in (0, 1), r.output
            no_canary(r)
    assert list(Path("results").glob("*.json"))
    for f in Path("results").iterdir():
        assert CANARY not in f.read_text(), f


def test_redact_url_never_raises_and_never_shows_secrets():
    from bench.config import redact_url

    for url, _ in BAD_URLS.values():
        shown = redact_url(url)
        assert CANARY not in shown and "user" not in shown, shown
    assert redact_url(f"http://u:{CANARY}@Host:8080/v1?k={CANARY}#{CANARY}") == "http://host:8080/v1"


# ----------------------------------------------------------------------------- files

ENDPOINT = ["--endpoint", "http://127.0.0.1:9/v1", "--models", "m", "-q"]
NOT_UTF8 = b"rounds: 2\n# caf\xe9 in Latin-1\n"


def test_non_utf8_bench_yaml_names_file_and_line():
    Path("latin1.yaml").write_bytes(NOT_UTF8)
    line = one_error_line(cli("collect", "--config", "latin1.yaml", *ENDPOINT), 2)
    assert "latin1.yaml:2: not UTF-8" in line and "save the file as UTF-8" in line, line
    Path("bench.yaml").write_bytes(NOT_UTF8)  # found on its own, without --config
    assert "bench.yaml:2: not UTF-8" in one_error_line(cli("collect", *ENDPOINT), 2)


@pytest.mark.parametrize("name,content", [
    ("p.yaml", b"- one\n- caf\xe9\n"),
    ("p.json", b'["one",\n "caf\xe9"]'),
])
def test_non_utf8_prompts_file_names_file_and_line(name, content):
    Path(name).write_bytes(content)
    line = one_error_line(cli("collect", "--prompts", name, *ENDPOINT), 2)
    assert f"{name}:2: not UTF-8" in line, line


def test_utf8_bom_is_accepted():
    Path("p.json").write_bytes(b'\xef\xbb\xbf["hello"]')
    from bench.config import load_prompts_file

    assert [p.text for p in load_prompts_file(Path("p.json"))] == ["hello"]


@pytest.mark.parametrize("name", ["x.json", "x.yaml"])
def test_directory_as_prompts_file(name):
    Path(name).mkdir()
    line = one_error_line(cli("collect", "--prompts", name, *ENDPOINT), 2)
    assert f"{name} is a directory" in line and "prompts file" in line, line


@pytest.mark.parametrize("name,content,got", [
    ("p.yaml", "a: 1\nb: 2\n", "a mapping"),
    ("p.yaml", "42\n", "a number"),
    ("p.yaml", "", "nothing"),
    ("p.json", '{"prompts": ["a"]}', "a mapping"),
    ("p.json", "3.5", "a number"),
    ("p.json", '"just text"', "a string"),
])
def test_prompts_file_that_is_not_a_list(name, content, got):
    Path(name).write_text(content)
    line = one_error_line(cli("collect", "--prompts", name, *ENDPOINT), 2)
    assert "must be a non-empty list" in line and f"got {got}" in line, line


def test_bench_yaml_that_is_a_directory():
    Path("conf.yaml").mkdir()
    assert "conf.yaml is a directory" in one_error_line(cli("collect", "--config", "conf.yaml", *ENDPOINT), 2)
    # ./bench.yaml is read when present: a directory there is an error, not silently no config.
    Path("bench.yaml").mkdir()
    assert "bench.yaml is a directory" in one_error_line(cli("collect", *ENDPOINT), 2)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_bench_yaml():
    Path("bench.yaml").write_text("rounds: 1\n")
    Path("bench.yaml").chmod(0)
    line = one_error_line(cli("collect", *ENDPOINT), 2)
    assert "bench.yaml: permission denied" in line, line


def test_results_dir_that_is_a_file():
    Path("taken").write_text("not a folder\n")
    line = one_error_line(cli("collect", "--results-dir", "taken", *ENDPOINT), 1)
    assert "taken is a file, not a folder" in line and "--results-dir" in line, line
    line = one_error_line(cli("collect", "--results-dir", "taken/sub", *ENDPOINT), 1)
    assert "taken/sub" in line and "--results-dir" in line, line
    line = one_error_line(cli("collect", *ENDPOINT, env={"BENCH_RESULTS_DIR": "taken"}), 1)
    assert "taken is a file, not a folder" in line, line
    assert Path("taken").read_text() == "not a folder\n"


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("flag,value,expected", [
    ("--timeout", "nan", "--timeout must be a positive, finite number of seconds (got nan)"),
    ("--timeout", "inf", "--timeout must be a positive, finite number of seconds (got inf)"),
    ("--timeout", "-1", "--timeout must be a positive, finite number of seconds"),
    ("--stall-timeout", "nan", "--stall-timeout must be a positive, finite number of seconds (got nan)"),
    ("--stall-timeout", "inf", "--stall-timeout must be a positive, finite number of seconds (got inf)"),
    ("--max-tokens", "0", "--max-tokens must be at least 1 (got 0)"),
    ("--max-tokens", "-5", "--max-tokens must be at least 1 (got -5)"),
    ("--rounds", "-3", "--rounds must be at least 1 (got -3)"),
    ("--warmup", "-1", "--warmup must be at least 0 (got -1)"),
])
def test_bad_number_flags(flag, value, expected):
    line = one_error_line(cli("collect", *ENDPOINT, flag, value), 2)
    assert expected in line, line
    assert not Path("results").exists()  # refused before anything was written


@pytest.mark.parametrize("flag", ["--rounds", "--warmup"])
def test_absurd_matrix_is_refused_before_it_is_built(flag, monkeypatch):
    from bench.measure import runner

    def must_not_run(*a, **k):
        raise AssertionError("the runner was reached")

    monkeypatch.setattr(runner, "prepare", must_not_run)
    line = one_error_line(cli("collect", *ENDPOINT, flag, "1000000000"), 2)
    assert "would make" in line and "requests" in line and "limit of 1,000,000" in line, line
    assert flag in line, line


@pytest.mark.parametrize("yaml_line,expected", [
    ("timeout_s: .nan", "timeout_s: Input should be a finite number"),
    ("stall_timeout_s: .inf", "stall_timeout_s: Input should be a finite number"),
    ("generation: {temperature: .inf}", "temperature: Input should be a finite number"),
    ("rounds: 1000000000", "would make"),
])
def test_bad_numbers_in_bench_yaml(yaml_line, expected):
    Path("bench.yaml").write_text(yaml_line + "\n")
    line = one_error_line(cli("collect", *ENDPOINT), 2)
    assert expected in line, line


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_bad_timeout_of_models_and_judge(value, a_run, server):
    line = one_error_line(cli("models", "--endpoint", server.url, "--timeout", value), 2)
    assert "--timeout must be a positive, finite number of seconds" in line, line
    line = one_error_line(cli("judge", "--endpoint", server.url, "--model", "j", "--timeout", value), 2)
    assert "--timeout must be a positive, finite number of seconds" in line, line


def test_bad_diff_threshold():
    line = one_error_line(cli("diff", "a", "b", "--threshold", "nan"), 1)
    assert "--threshold must be a positive fraction" in line, line


@pytest.mark.parametrize("key,value,expected", [
    ("rounds", 10**9, "would make"),
    ("timeout_s", -1.0, "positive, finite number of seconds"),  # (a NaN is refused on load: not JSON)
])
def test_resume_refuses_an_absurd_stored_plan(a_run, server, key, value, expected):
    import json

    path = a_run.path
    data = json.loads(path.read_text())
    data["config"][key] = value
    path.write_text(json.dumps(data))
    line = one_error_line(cli("collect", "--resume", a_run.run.run_id, "--endpoint", server.url, "-q"), 2)
    assert "config snapshot" in line and expected in line, line


# ----------------------------------------------------------------------------- a full disk


@pytest.fixture
def disk_full_after(monkeypatch):
    """A full disk cannot be made in a test: os.fsync (which store.atomic_write calls once per
    file written) raises ENOSPC from its Nth call on, as a full disk would."""
    import errno

    def install(n: int):
        calls = {"n": 0}

        def fsync(fd):
            calls["n"] += 1
            if calls["n"] >= n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", fsync)

    return install


def _three_prompts() -> list[str]:
    Path("p.json").write_text('["one", "two", "three"]')
    return ["--prompts", "p.json", "--rounds", "2", "--warmup", "0"]


def test_disk_full_mid_run_keeps_every_saved_request(server, disk_full_after):
    from bench.results import store

    server.set_model("m", Script())
    disk_full_after(5)  # 1: the run file, 2: the journal's first state, 3-4: two requests, 5: the third fails
    r = cli("collect", "--endpoint", server.url, "--models", "m", "-q", *_three_prompts())
    line = one_error_line(r, 1)
    [path] = Path("results").glob("*.json")
    assert "disk full" in line and str(path) in line, line
    assert "2 measured requests" in line and f"bench collect --resume {path.stem}" in line, line
    run = store.load_run(path)  # still a valid run: the file and its journal
    # The simulated failure comes from fsync, after the write: the third may be kept too, never fewer.
    assert len([s for s in run.samples if not s.warmup]) >= 2
    assert [p.name for p in Path("results").iterdir()] == [path.name]  # no temp file left


def test_disk_full_before_the_first_save(server, disk_full_after):
    server.set_model("m", Script())
    disk_full_after(1)
    r = cli("collect", "--endpoint", server.url, "--models", "m", "-q", *_three_prompts())
    line = one_error_line(r, 1)
    assert "disk full" in line and "nothing was measured yet" in line, line
    assert list(Path("results").iterdir()) == []


def test_disk_full_while_scoring_or_annotating(a_run, disk_full_after):
    before = a_run.path.read_bytes()
    measured = sum(1 for s in a_run.run.samples if not s.warmup)
    disk_full_after(1)
    line = one_error_line(cli("score", a_run.run.run_id), 1)
    assert "disk full" in line and str(a_run.path) in line and f"{measured} measured requests" in line, line
    assert a_run.path.read_bytes() == before
    line = one_error_line(cli("annotate", a_run.run.run_id), 1)
    assert "disk full" in line and "was not created" in line, line
    assert sorted(p.suffix for p in Path("results").iterdir()) == [".json"]
