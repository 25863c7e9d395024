"""Quality: rubric at collect time, annotation round-trip, the LLM judge, agreement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from bench.config import Endpoint, resolve
from bench.errors import ConfigError, EndpointError
from bench.quality.annotations import (
    AnnotationError,
    agreement,
    annotation_path,
    cohen_kappa,
    manual_scores,
    model_quality,
    parse_verdict,
    spearman,
    update_annotations,
)
from bench.quality.judge import judge_run
from bench.results import journal, store
from bench.results.schema import SCHEMA_VERSION
from tests.conftest import Script, cli, collect

GOOD = ["Retrieval augmented generation retrieves relevant documents from an external knowledge source. ",
        "The model then generates an answer grounded in them."]


def test_default_prompts_are_scored_from_the_stored_outputs_on_load(server):
    server.set_model("good", Script(tokens=GOOD))
    server.set_model("bad", Script(tokens=["The cat sat on the mat."]))
    out = collect(server, "good,bad", rounds=1, warmup=0)
    assert all(s.rubric is None for s in out.run.samples)  # the runner measures; it does not score
    assert not any("rubric" in s for s in json.loads(out.path.read_text())["samples"])  # never stored
    run = store.load_run(out.path)
    q = model_quality(run)
    assert q["good"].rubric > q["bad"].rubric
    s = next(s for s in run.samples if s.model == "good" and s.prompt_id == "rag-two-sentences")
    assert s.rubric.score == 1.0 and all(c.passed for c in s.rubric.checks)
    bad = next(s for s in run.samples if s.model == "bad" and s.prompt_id == "rag-two-sentences")
    assert any(not c.passed and "none of" in c.why for c in bad.rubric.checks)


def test_invalid_rubric_regex_names_file_and_line(tmp_path):
    (tmp_path / "bench.yaml").write_text(
        "prompts:\n  - id: p\n    text: Say hi\n    rubric:\n      facets:\n        - regex: '(unclosed'\n")
    with pytest.raises(ConfigError, match=r"bench\.yaml:4: rubric of prompt 'p'.*invalid regex"):
        resolve(tmp_path / "bench.yaml", env={}, endpoint="http://h/v1", models="m")


def _annotate(server, tmp_path):
    server.set_model("m", Script(tokens=GOOD))
    server.set_model("n", Script(tokens=["Short answer."]))
    out = collect(server, "m,n", rounds=1, warmup=0)
    path, added, kept = update_annotations(out.run, out.path)
    return out, path, added, kept


def test_annotation_round_trip_keeps_scores_comments_and_order(server, tmp_path):
    out, path, added, kept = _annotate(server, tmp_path)
    assert path == annotation_path(out.path) and added == 8 and kept == 0
    yaml = YAML()
    data = yaml.load(path.read_text())
    data["responses"][0]["score"] = 4
    data["responses"][0]["comment"] = "clear and correct"
    data["responses"][1]["score"] = 2
    data["responses"].insert(0, data["responses"].pop(1))  # the annotator reorders
    with path.open("w") as f:
        yaml.dump(data, f)
    path.write_text(path.read_text().replace("run_id:", "# my own note\nrun_id:", 1))
    order = [r["id"] for r in YAML().load(path.read_text())["responses"]]

    # New results: a new output for one cell arrives (a resumed or re-scored run).
    run = out.run
    extra = run.samples[0].model_copy(update={"output": "A brand new answer.", "round": 7})
    run.samples.append(extra)
    _, added2, kept2 = update_annotations(run, out.path)
    assert (added2, kept2) == (1, 8)
    text = path.read_text()
    assert "# my own note" in text and "clear and correct" in text
    after = YAML().load(text)["responses"]
    assert [r["id"] for r in after][:8] == order and after[-1]["output"] == "A brand new answer."
    scores = manual_scores(out.path)
    assert sorted(scores.values()) == [2, 4]


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.replace("responses:", "responses: [", 1), r"annotations\.yaml:\d+: the annotation file is not valid YAML"),
    (lambda t: t.replace("score:", "score: 9", 1), r"annotations\.yaml:\d+: score 9 of .* must be an integer 1-5"),
    (lambda t: t.replace("score:", "score: great", 1), r"must be an integer 1-5"),
])
def test_broken_annotation_files_are_refused_and_never_overwritten(server, tmp_path, edit, message):
    out, path, _, _ = _annotate(server, tmp_path)
    broken = edit(path.read_text())
    path.write_text(broken)
    with pytest.raises(AnnotationError, match=message):
        update_annotations(out.run, out.path)
    assert path.read_text() == broken
    r = cli("annotate", out.run.run_id)
    assert r.exit_code == 2 and "annotations.yaml" in r.stderr and "Traceback" not in r.stderr


def test_judge_scores_valid_and_records_garbage_as_unparseable(server):
    server.set_model("m", Script(tokens=GOOD))
    server.set_model("judge", Script(tokens=["SCORE: 4\n", "Accurate and concise."]))
    out = collect(server, "m", rounds=1, warmup=0)
    server.enqueue("judge", Script(tokens=["I would say it is pretty good overall."]))
    writer = journal.RunWriter(out.path, store.load_run(out.path), new=False)
    summary = judge_run(writer, Endpoint(name="j", base_url=server.url), "judge", env={})
    writer.finish()  # release the run's lock
    assert summary.judged == 4 and summary.unparseable == 1
    run = store.load_run(out.path)
    verdicts = sorted((j.score, j.error) for j in run.judgements if j.score is None) 
    assert verdicts == [(None, "unparseable verdict")]
    good = [j for j in run.judgements if j.score is not None]
    assert len(good) == 3 and all(j.score == 4 and j.judge_resolved_id == "judge" for j in good)
    j = run.judgements[0]
    assert j.prompt_hash and j.prompt_version == 1 and "I would say" in j.raw
    assert model_quality(run)["m"].judge == 4.0 and model_quality(run)["m"].unparseable == 1
    # The judge saw the rubric's criteria and the answer, fenced.
    bodies = [q["body"] for q in server.requests if q["body"] and q["body"].get("model") == "judge"]
    content = next(c for b in bodies if "retrieval augmented" in (c := b["messages"][0]["content"]))  # prompts are shuffled
    assert "covers retrieval" in content and "<<<ANSWER" in content and GOOD[0].strip() in content
    # Judging again skips what this judge already scored.
    again = judge_run(writer, Endpoint(name="j", base_url=server.url), "judge", env={})
    assert again.judged == 0 and again.already == 4


def test_judge_errors_are_not_verdicts_and_are_retried(server):
    server.set_model("m", Script(tokens=GOOD))
    server.set_model("judge", Script(tokens=["SCORE: 4"]))
    out = collect(server, "m", rounds=1, warmup=0)
    server.enqueue("judge", Script(status=503), Script(status=401))
    r = cli("judge", out.run.run_id, "--endpoint", server.url, "--model", "judge")
    assert r.exit_code == 1 and "2 request(s) to the judge failed" in r.stderr
    run = store.load_run(out.path)
    assert len(run.judgements) == 2 and all(j.score == 4 for j in run.judgements)
    r = cli("judge", out.run.run_id, "--endpoint", server.url, "--model", "judge")
    assert r.exit_code == 0
    assert len(store.load_run(out.path).judgements) == 4


def test_a_model_never_judges_itself(server):
    server.set_model("m", Script(tokens=GOOD))
    out = collect(server, "m", rounds=1, warmup=0)
    writer = journal.RunWriter(out.path, store.load_run(out.path), new=False)
    summary = judge_run(writer, Endpoint(name="j", base_url=server.url), "m", env={})
    writer.finish()  # release the run's lock
    assert summary.judged == 0 and summary.skipped_self == ["m"]
    assert not [q for q in server.requests if q["body"] and "<<<ANSWER" in json.dumps(q["body"])]
    r = cli("judge", out.run.run_id, "--endpoint", server.url, "--model", "m")
    assert r.exit_code == 0 and "never judges its own outputs" in r.stderr


def test_judge_endpoint_down_is_a_clear_error(server):
    server.set_model("m", Script())
    out = collect(server, "m", rounds=1, warmup=0)
    r = cli("judge", out.run.run_id, "--endpoint", "http://127.0.0.1:9/v1", "--model", "big")
    assert r.exit_code == 1 and "judge endpoint is down" in r.stderr and "Traceback" not in r.stderr
    writer = journal.RunWriter(out.path, store.load_run(out.path), new=False)
    with pytest.raises(EndpointError, match="does not serve 'ghost'"):
        judge_run(writer, Endpoint(name="j", base_url=server.url), "ghost", env={})
        writer.finish()  # release the run's lock


def test_parse_verdict():
    assert parse_verdict("SCORE: 5\nGreat.") == 5
    assert parse_verdict("**Score:** 3 because") is None or parse_verdict("**Score:** 3 because") == 3
    assert parse_verdict("score = 2") == 2
    assert parse_verdict("SCORE: 4 ... actually SCORE: 2") is None  # ambiguous
    assert parse_verdict("I give it a 4") is None
    assert parse_verdict("SCORE: 7") is None


def test_agreement_statistics():
    assert cohen_kappa([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert cohen_kappa([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) < 0
    near = cohen_kappa([1, 2, 3, 4, 5, 3], [2, 2, 3, 5, 5, 3])
    assert 0.5 < near < 1.0
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_agreement_joins_manual_and_judge_scores(server):
    server.set_model("m", Script(tokens=GOOD))
    server.set_model("judge", Script(tokens=["SCORE: 4"]))
    out = collect(server, "m", rounds=1, warmup=0)
    writer = journal.RunWriter(out.path, store.load_run(out.path), new=False)
    judge_run(writer, Endpoint(name="j", base_url=server.url), "judge", env={})
    writer.finish()  # release the run's lock
    run = store.load_run(out.path)
    manual = {j.response_id: 4 for j in run.judgements}
    manual[run.judgements[0].response_id] = 3
    a = agreement(run, manual)
    assert a["n"] == 4 and a["kappa"] is not None


def test_version_1_files_are_upgraded(server):
    server.set_model("m", Script())
    out = collect(server, "m", rounds=1, warmup=0)
    data = json.loads(out.path.read_text())
    data["schema_version"] = 1  # as version 1 wrote it: no quality, no cache control, no scenario
    data.pop("judgements")
    data["workload"].pop("prompt_cache")
    data["workload"].pop("scenario")
    for p in data["workload"]["prompts"]:
        p.pop("rubric", None)
    for s in data["samples"]:
        s.pop("cache_nonce")
        s.pop("scenario")
    out.path.write_text(json.dumps(data))
    run = store.load_run(out.path)
    assert run.schema_version == SCHEMA_VERSION and run.judgements == [] and run.samples[0].rubric is None
    assert run.workload.prompt_cache == "unknown"


def test_quality_shows_on_the_pages(server, tmp_path):
    from bench.report.render import render

    server.set_model("m", Script(tokens=GOOD))
    server.set_model("judge", Script(tokens=["SCORE: 5 ", "<b>bold</b> claim"]))
    out = collect(server, "m", rounds=1, warmup=0)
    writer = journal.RunWriter(out.path, store.load_run(out.path), new=False)
    judge_run(writer, Endpoint(name="j", base_url=server.url), "judge", env={})
    writer.finish()  # release the run's lock
    update_annotations(writer.run, out.path)
    ann = annotation_path(out.path)
    ann.write_text(ann.read_text().replace("score:", "score: 3", 1))
    render(out.path.parent, Path("docs"))
    prompt_page = Path("docs/report/prompts/rag-two-sentences.md").read_text()
    assert "Rubric: **5/5** checks passed" in prompt_page and "| ✓ | facet&#58;" not in prompt_page
    assert "Judge judge: **5**/5" in prompt_page and "<b>bold</b>" in prompt_page  # raw verdict in a code block
    run_page = next(Path("docs/report/runs").glob("2*.md")).read_text()
    import re
    assert re.search(r"\| m \| 0\.\d\d \(n=4\) \| 3\.0 \(n=1\) \| 5\.0 \(n=4\) \| 0\.\d\d \|", run_page)
    assert "rubric + manual + judge" in run_page
    assert "Manual vs judge on 1 responses" in run_page
    selection = Path("docs/report/selection.md").read_text()
    assert "| quality |" in selection
