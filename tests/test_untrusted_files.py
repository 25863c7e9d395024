"""Everything outside bench is untrusted: results files and page manifests arrive through pull
requests. A planted or broken file never crashes bench, and bench never deletes or overwrites a
file it did not generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.report.render import MARKER, render, slug
from tests.conftest import Script, cli, collect
from tests.site_helpers import bench, mkdocs_build, project_copy

# ----------------------------------------------------------------------------- helpers


def _run(server, results: Path, model: str = "m") -> Path:
    server.set_model(model, Script())
    return collect(server, model, rounds=1, warmup=0, results_dir=results).path


def _victim(tmp_path: Path, name: str = "victim.txt") -> Path:
    v = tmp_path / "outside" / name
    v.parent.mkdir(parents=True, exist_ok=True)
    v.write_text("precious\n")
    return v


def _plant_manifest(docs: Path, entries) -> None:
    if isinstance(entries, bytes):
        (docs / "report" / MARKER).write_bytes(entries)
    else:
        (docs / "report" / MARKER).write_text(entries if isinstance(entries, str) else json.dumps(entries))


# ----------------------------------------------------------------------------- 1. the page manifest


def test_manifest_naming_files_outside_the_generated_folders_never_deletes_them(server, tmp_path):
    _run(server, tmp_path / "results")
    docs = tmp_path / "docs"
    render(tmp_path / "results", docs)
    absolute, dotdot, sneaky = _victim(tmp_path, "a.md"), _victim(tmp_path, "b.md"), _victim(tmp_path, "c.md")
    (docs / "methodology.md").write_text("hand-written\n")
    _plant_manifest(docs, [str(absolute), "../outside/b.md", "report/../../outside/c.md", "methodology.md"])
    report, _ = render(tmp_path / "results", docs)
    for v in (absolute, dotdot, sneaky):
        assert v.read_text() == "precious\n", v
    assert (docs / "methodology.md").read_text() == "hand-written\n"
    assert report.removed == [] and any("manifest" in w for w in report.warnings)
    # The CLI (bench render --out) and the MkDocs hook go through the same writer.
    _plant_manifest(docs, [str(absolute), "../outside/b.md"])
    r = bench(tmp_path, "render", "--results-dir", "results", "--out", "docs")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert absolute.exists() and dotdot.exists() and "manifest" in r.stderr


def test_mkdocs_build_with_a_planted_manifest_deletes_nothing_outside(server, tmp_path):
    _run(server, tmp_path / "results")
    project = project_copy(tmp_path / "proj", tmp_path / "results")
    victim = _victim(tmp_path)
    (project / "site_src" / "report").mkdir()
    _plant_manifest(project / "site_src", [str(victim), "../../outside/victim.txt"])
    r = mkdocs_build(project, strict=False)
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "precious\n"
    assert "manifest" in r.stderr


def test_manifest_claiming_a_hand_written_page_never_overwrites_or_removes_it(server, tmp_path):
    _run(server, tmp_path / "results")
    docs = tmp_path / "docs"
    render(tmp_path / "results", docs)
    (docs / "index.md").write_text("# My own home page\n")
    (docs / "report" / "notes.md").write_text("my notes\n")
    _plant_manifest(docs, ["index.md", "report/notes.md"])
    with pytest.raises(BenchError, match="index.md exists and was not written by bench"):
        render(tmp_path / "results", docs)
    assert (docs / "index.md").read_text() == "# My own home page\n"
    (docs / "index.md").unlink()
    report, _ = render(tmp_path / "results", docs)
    assert (docs / "report" / "notes.md").read_text() == "my notes\n" and report.removed == []
    assert any("notes.md" in w for w in report.warnings)


def test_planted_symlinks_among_generated_pages_are_never_followed(server, tmp_path):
    a = _run(server, tmp_path / "results")
    docs = tmp_path / "docs"
    render(tmp_path / "results", docs)
    outside_dir = tmp_path / "outside_dir"
    outside_dir.mkdir()
    (outside_dir / "kept.md").write_text("precious\n")
    # A generated folder replaced by a symlink to a folder outside: nothing is written or deleted there.
    models = docs / "report" / "models"
    for p in models.iterdir():
        p.unlink()
    models.rmdir()
    models.symlink_to(outside_dir, target_is_directory=True)
    _plant_manifest(docs, ["report/models/kept.md", "report/models/index.md"])
    with pytest.raises(BenchError, match="symlink"):
        render(tmp_path / "results", docs)
    assert [p.name for p in outside_dir.iterdir()] == ["kept.md"]
    assert (outside_dir / "kept.md").read_text() == "precious\n"
    models.unlink()
    render(tmp_path / "results", docs)
    # A generated page replaced by a symlink to a file outside: never written through, never removed.
    victim = _victim(tmp_path)
    page = docs / "report" / "runs" / f"{slug(a.stem)}.md"
    page.unlink()
    page.symlink_to(victim)
    with pytest.raises(BenchError, match="symlink"):
        render(tmp_path / "results", docs)
    assert victim.read_text() == "precious\n" and page.is_symlink()
    a.unlink()  # the run is gone: its page would be removed, but the symlink is not bench's
    report, _ = render(tmp_path / "results", docs)
    assert victim.read_text() == "precious\n" and page.is_symlink()
    assert f"report/runs/{page.name}" not in report.removed and any("symlink" in w for w in report.warnings)


@pytest.mark.parametrize("manifest", ["{oops", '{"a": 1}', "[1, null, {}]", '"report/x.md"', b"\xff\xfe\x00", "[" * 100000])
def test_corrupt_manifest_warns_and_deletes_nothing(server, tmp_path, manifest):
    _run(server, tmp_path / "results")
    docs = tmp_path / "docs"
    render(tmp_path / "results", docs)
    (docs / "report" / "notes.md").write_text("mine\n")
    _plant_manifest(docs, manifest)
    report, _ = render(tmp_path / "results", docs)
    assert (docs / "report" / "notes.md").read_text() == "mine\n" and report.removed == []
    assert any("manifest" in w for w in report.warnings)
    again, _ = render(tmp_path / "results", docs)  # the manifest was rewritten: no more warning
    assert again.warnings == []


def test_generated_pages_carry_a_generated_by_mark_and_stale_ones_are_still_removed(server, tmp_path):
    a = _run(server, tmp_path / "results")
    _run(server, tmp_path / "results")
    docs = tmp_path / "docs"
    render(tmp_path / "results", docs)
    page = docs / "report" / "runs" / f"{slug(a.stem)}.md"
    assert "generated by bench" in page.read_text()
    a.unlink()
    report, _ = render(tmp_path / "results", docs)
    assert report.removed == [f"report/runs/{slug(a.stem)}.md"] and not page.exists()


# ----------------------------------------------------------------------------- 2. one bad results file


def _odd(name: str, data: dict) -> dict | bytes:
    """A results file that is broken or schema-valid but odd, made from a valid run's data."""
    data["run_id"] = f"20990101T000000.000Z-{name}"
    s0 = data["samples"][0]
    if name == "binary":
        return b"\x00\xff\xfe\x89PNG\r\n" * 64
    if name == "deep":
        return ("[" * 100000 + "]" * 100000).encode()
    if name == "deep-config":
        data["config"]["x"] = json.loads("[" * 900 + "]" * 900)
    elif name == "top-level-list":
        return b"[1, 2, 3]"
    elif name == "prompt-without-id":
        del data["workload"]["prompts"][0]["id"]
    elif name == "prompt-id-not-text":
        data["workload"]["prompts"][0]["id"] = 5
    elif name == "prompt-not-object":
        data["workload"]["prompts"][0] = "just a string"
    elif name == "no-models":
        data["models"], data["samples"] = {}, []
    elif name == "samples-of-unknown-models":
        for s in data["samples"]:
            s["model"] = "ghost"
    elif name == "nan":
        s0["e2e_s"] = float("nan")
    elif name == "infinity":
        s0["ttft_s"] = float("inf")
    elif name == "overflowing-float":
        return json.dumps(data).replace('"e2e_s": ', '"e2e_s": 1e999, "x_": ', 1).encode()
    elif name == "huge-int":
        s0["completion_tokens"] = 10**30
    elif name == "very-long-int":
        return json.dumps(data).replace('"round": 0', '"round": ' + "9" * 5000, 1).encode()
    elif name == "negative-times":
        s0["e2e_s"], s0["ttft_s"], s0["itl_s"] = -1.0, -5.0, [-1.0, 1e308]
    elif name == "traversal-run-id":
        data["run_id"] = "../../outside/x"
    elif name == "duplicate-run-id":
        data["run_id"] = "DUP"
    return json.dumps(data).encode()


ODD = ["binary", "deep", "deep-config", "top-level-list", "prompt-without-id", "prompt-id-not-text",
       "prompt-not-object", "no-models", "samples-of-unknown-models", "nan", "infinity", "overflowing-float",
       "huge-int", "very-long-int", "negative-times", "traversal-run-id", "duplicate-run-id"]


def _strict_json(text: str):
    def refuse(c):
        raise ValueError(f"invalid JSON constant {c}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("name", ODD)
def test_one_bad_results_file_never_blocks_any_command(server, tmp_path, name):
    results = tmp_path / "results"
    good = _run(server, results)
    bad = results / f"odd-{name}.json"
    bad.write_bytes(_odd(name, json.loads(good.read_text())))
    if name == "duplicate-run-id":
        (results / "odd-dup2.json").write_bytes(bad.read_bytes())
    from bench.results.store import load_all

    runs, problems = load_all(results)
    assert good.stem in {r.run_id for r in runs}
    for p in problems:
        assert p.path.name.startswith("odd-") and p.path.name in p.message
    report, _ = render(results, tmp_path / "docs")
    assert (tmp_path / "docs" / "report" / "runs" / f"{slug(good.stem)}.md").exists()
    for args in (["show", str(bad)], ["show", str(bad), "--json"], ["show", "latest", "--json"],
                 ["export", str(bad), "-o", str(tmp_path / "r.md")],
                 ["export", str(bad), "--format", "csv", "-o", str(tmp_path / "r.csv")],
                 ["export", "latest", "-o", str(tmp_path / "l.md")],
                 ["diff", str(good), str(bad), "--format", "json"], ["diff", str(bad), str(good)], ["diff"]):
        r = cli(*args, "--results-dir", str(results)) if args[0] != "diff" or len(args) == 1 else cli(*args)
        assert r.exit_code in (0, 1, 2), (args, r.output)
        if r.exit_code == 0 and "--json" in args or "json" in args:
            if r.exit_code == 0:
                _strict_json(r.stdout)
    assert not (tmp_path / "outside").exists()


def test_a_results_file_over_the_size_limit_is_refused_without_reading_it(server, tmp_path):
    from bench.results.store import MAX_RESULTS_BYTES, load_all

    results = tmp_path / "results"
    good = _run(server, results)
    huge = results / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(MAX_RESULTS_BYTES + 1)  # sparse: costs no disk
    runs, problems = load_all(results)
    assert [r.run_id for r in runs] == [good.stem]
    assert len(problems) == 1 and "huge.json" in problems[0].message and "larger than" in problems[0].message
    r = cli("show", str(huge))
    assert r.exit_code == 1 and "larger than" in r.stderr


def test_mkdocs_build_with_every_kind_of_bad_file_still_builds_and_names_them(server, tmp_path):
    results = tmp_path / "results"
    good = _run(server, results)
    for name in ODD:
        (results / f"odd-{name}.json").write_bytes(_odd(name, json.loads(good.read_text())))
    project = project_copy(tmp_path / "proj", results)
    r = mkdocs_build(project, strict=False)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "odd-binary.json" in r.stderr and "odd-deep.json" in r.stderr
    assert (project / "site" / "report" / "runs" / slug(good.stem) / "index.html").exists()
    strict = mkdocs_build(project)
    assert strict.returncode != 0 and "Traceback" not in strict.stderr


# ----------------------------------------------------------------------------- 2b. property test

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
            | st.sampled_from([-1, 0, 2**64, -1e308, 1e-320, "", "../x", "NaN"]))
_JSON = st.recursive(_SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                     max_leaves=12)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A small valid run (two models, one failing; four prompts with rubrics; three rounds)."""
    from tests.fake_server import FakeServer

    results = tmp_path_factory.mktemp("base") / "results"
    with FakeServer(tokenize=False) as srv:
        srv.set_model("m", Script(tokens=["Local ", "inference ", "keeps ", "data ", "private. "]))
        srv.set_model("bad", Script(status=500))
        path = collect(srv, "m,bad", rounds=3, warmup=0, results_dir=results).path
    return json.loads(path.read_text())


def _paths(value, prefix=()):
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for k, v in items:
        yield from _paths(v, (*prefix, k))


@st.composite
def _mutated(draw, base):
    data = json.loads(json.dumps(base))
    paths = list(_paths(data))[1:]
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths))
        parent = data
        try:
            for k in path[:-1]:
                parent = parent[k]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(_JSON)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this path
    return data


def _check_every_reader(results: Path, good_id: str, bad: Path) -> None:
    from bench.analysis import compare, scoring
    from bench.report.export import export_csv, export_markdown
    from bench.report.render import build_pages
    from bench.results.store import load_all, load_run

    runs, problems = load_all(results)
    assert good_id in {r.run_id for r in runs}
    assert all(p.path == bad for p in problems)
    pages = build_pages(runs, problems, scoring.DEFAULT_PROFILES)
    assert f"report/runs/{slug(good_id)}.md" in pages
    try:
        run = load_run(bad)
    except BenchError:
        return
    export_markdown(run, scoring.DEFAULT_PROFILES)
    export_csv(run)
    good = next(r for r in runs if r.run_id == good_id)
    compare.diff(compare.Side("a", {m: good for m in good.models}), compare.Side("b", {m: run for m in run.models}))
    r = cli("show", str(bad), "--json")
    assert r.exit_code == 0, r.output
    _strict_json(r.stdout)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_every_mutation_of_a_run_file_is_read_or_refused_never_a_crash(base_run, data, tmp_path_factory):
    results = tmp_path_factory.mktemp("prop") / "results"
    results.mkdir()
    (results / f"{base_run['run_id']}.json").write_text(json.dumps(base_run))
    bad = results / "zz-mutated.json"
    mutated = data.draw(_mutated(base_run))
    if isinstance(mutated, dict) and "run_id" in mutated:
        mutated["run_id"] = "zz-mutated" if mutated["run_id"] == base_run["run_id"] else mutated["run_id"]
    bad.write_text(json.dumps(mutated))
    _check_every_reader(results, base_run["run_id"], bad)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=_JSON | st.fixed_dictionaries({"schema_version": st.sampled_from([1, 2, True, 2.0])}, optional={
    k: _JSON for k in ("run_id", "status", "started_at", "machine", "models", "workload", "config", "samples")}),
    raw=st.binary(max_size=64))
def test_property_random_json_shapes_and_bytes_are_refused_never_a_crash(base_run, shape, raw, tmp_path_factory):
    results = tmp_path_factory.mktemp("shape") / "results"
    results.mkdir()
    (results / f"{base_run['run_id']}.json").write_text(json.dumps(base_run))
    bad = results / "zz-shape.json"
    bad.write_text(json.dumps(shape))
    _check_every_reader(results, base_run["run_id"], bad)
    bad.write_bytes(raw)
    _check_every_reader(results, base_run["run_id"], bad)


# ----------------------------------------------------------------------------- 4. NaN and Infinity


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_refused_on_load_naming_the_file(server, tmp_path, constant):
    from bench.errors import ResultsError
    from bench.results.store import load_run

    good = _run(server, tmp_path / "results")
    data = json.loads(good.read_text())
    bad = tmp_path / "results" / "nan.json"
    bad.write_text(json.dumps(data).replace('"e2e_s": ', f'"e2e_s": {constant}, "x": ', 1))
    with pytest.raises(ResultsError, match=r"nan\.json: corrupt results file"):
        load_run(bad)
    r = cli("show", str(bad), "--json")
    assert r.exit_code == 1 and r.stdout == "" and "nan.json" in r.stderr


def test_bench_never_writes_nan_or_infinity(server, tmp_path):
    from bench.errors import ResultsError
    from bench.results.journal import RunWriter
    from bench.results.store import load_run

    results = tmp_path / "results"
    a, b = _run(server, results), _run(server, results)
    r = cli("diff", str(a), str(b), "--format", "json")  # one request per side: no interval (was ±Infinity)
    assert r.exit_code == 0, r.output
    rows = _strict_json(r.stdout)["rows"]
    assert rows and all(row["ci"] is None or None in row["ci"] for row in rows)
    r = cli("show", str(b), "--json")
    assert r.exit_code == 0
    _strict_json(r.stdout)
    run = load_run(b)
    run.samples[0].e2e_s = float("nan")
    before = b.read_bytes()
    with pytest.raises(ResultsError, match="NaN or Infinity"):
        RunWriter(b, run, new=False).save()
    assert b.read_bytes() == before


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary", b"responses: " + b"[" * 5000, b"- a\n- b\n"])
def test_a_bad_annotation_file_is_a_warning_not_a_crash(server, tmp_path, content):
    from bench.quality.annotations import annotation_path

    results = tmp_path / "results"
    good = _run(server, results)
    annotation_path(good).write_bytes(content)
    report, problems = render(results, tmp_path / "docs")
    assert [p.path.name for p in problems] == [annotation_path(good).name]
    assert (tmp_path / "docs" / "report" / "runs" / f"{slug(good.stem)}.md").exists()


# ----------------------------------------------------------------------------- 3. 'latest'


def _copy_run(src: Path, dest: Path, run_id: str, started_at: str, **changes) -> Path:
    data = json.loads(src.read_text())
    data.update(run_id=run_id, started_at=started_at, **changes)
    dest.write_text(json.dumps(data))
    return dest


def test_latest_is_the_newest_readable_run_by_started_at_skipping_unreadable_files(server, tmp_path):
    from bench.results.store import find_run

    results = tmp_path / "results"
    a = _run(server, results)
    # File names sort the other way round from the recorded start times.
    b = _copy_run(a, results / "000-b.json", "000-b", "2099-01-01T00:00:00.000Z")
    c = _copy_run(a, results / "001-c.json", "001-c", "2099-01-01T00:00:00.000Z")  # a tie: the larger run id
    _copy_run(a, results / "002-old.json", "002-old", "2000-01-01T00:00:00.000Z")
    (results / "zzz-notes.json").write_text('{"hello": "not a run"}')
    (results / "zzzz-future.json").write_text('{"schema_version": 999}')
    r = cli("show", "latest", "--json", "--results-dir", str(results))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["run_id"] == "001-c" and "zzz-notes.json" in r.stderr
    problems = []
    assert find_run(results, "latest", problems) == c
    assert {p.path.name for p in problems} == {"zzz-notes.json", "zzzz-future.json"}
    r = cli("export", "latest", "--results-dir", str(results), "-o", str(tmp_path / "x.md"))
    assert r.exit_code == 0 and "001-c" in (tmp_path / "x.md").read_text()
    c.unlink()
    assert find_run(results, "latest") == b
    for p in results.glob("*.json"):
        if p != a:
            p.unlink()
    assert find_run(results, "latest") == a


def test_resume_latest_skips_a_planted_newer_file(server, tmp_path):
    results = tmp_path / "results"
    a = _run(server, results)
    data = json.loads(a.read_text())
    data["status"], data["samples"] = "interrupted", data["samples"][:1]
    a.write_text(json.dumps(data))
    (results / "zzzz-planted.json").write_text('{"schema_version": 999}')
    r = cli("collect", "--resume", "latest", "--endpoint", server.url, "--results-dir", str(results), "-q")
    assert r.exit_code == 0, r.output
    assert "zzzz-planted.json" in r.stderr
    assert json.loads(a.read_text())["status"] == "complete"


# ----------------------------------------------------------------------------- 5. symlinks in results/


def test_symlinks_in_results_are_skipped_with_a_warning(server, tmp_path):
    from bench.results.store import find_run, load_all, load_run

    results = tmp_path / "results"
    a = _run(server, results)
    outside = _copy_run(a, tmp_path / "outside.json", "zzzz-outside", "2099-01-01T00:00:00.000Z")
    link = results / "zzzz-outside.json"
    link.symlink_to(outside)
    runs, problems = load_all(results)
    assert [r.run_id for r in runs] == [a.stem]
    assert [p.path for p in problems] == [link] and "symlink" in problems[0].message
    assert find_run(results, "latest") == a
    with pytest.raises(BenchError, match="symlink"):
        load_run(find_run(results, "zzzz-outside"))
    report, problems = render(results, tmp_path / "docs")
    assert not (tmp_path / "docs" / "report" / "runs" / "zzzz-outside.md").exists()
    r = cli("show", "zzzz-outside", "--results-dir", str(results))
    assert r.exit_code == 1 and "symlink" in r.stderr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_the_fast_loader_accepts_only_what_the_checked_loader_accepts_and_reads_it_alike(base_run, data):
    """Current-format files load through pydantic's own JSON parser (a 1,000-run site reads half a
    gigabyte); whatever it accepts, the checked path must accept too and read the same."""
    from bench.results import parse

    mutated = data.draw(_mutated(base_run))
    raw = json.dumps(mutated).encode()
    _same_verdict(parse, raw)


@pytest.mark.parametrize("where, value", [
    (("samples", 0, "ttft_s"), float("nan")), (("samples", 0, "e2e_s"), "1e999"), (("config", "x"), "1e999"),
    (("samples", 0, "round"), "1" + "0" * 30), (("config", "deep"), "DEEP"), (("models", "m", "extra", "x"), "DEEP"),
    (("samples", 0, "scenario"), "DEEP"), (("workload", "prompts", 0, "x"), float("inf")),
])
def test_the_fast_loader_hands_every_hostile_value_to_the_checked_loader(base_run, where, value):
    from bench.results import parse

    assert parse._fast_run(json.dumps(base_run).encode()) is not None, "the untouched file takes the fast path"
    data = json.loads(json.dumps(base_run))
    parent = data
    for k in where[:-1]:
        parent = parent[k]
    parent[where[-1]] = "@@V@@"
    text = json.dumps(data)
    literal = "[" * 70 + "]" * 70 if value == "DEEP" else json.dumps(value) if isinstance(value, float) else value
    raw = text.replace('"@@V@@"', literal).encode()
    assert raw.startswith(b'{"schema_version": ')
    assert parse._fast_run(raw) is None
    with pytest.raises(BenchError):
        parse.parse_run(raw, "x.json")


def _same_verdict(parse, raw: bytes) -> None:
    fast = parse._fast_run(raw)
    try:
        checked = parse.parse_run_checked(raw, "x.json")
    except BenchError:
        checked = None
    if fast is not None:
        assert checked is not None, "the fast path accepted a file the checked path refuses"
        assert parse.score_rubrics(fast) == checked
