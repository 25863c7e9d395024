"""Rubric checks: parsing errors, each check kind, the counting rules and the default rubrics."""

from __future__ import annotations

import pytest

from bench.results.rubric import (
    RUBRIC_ENGINE_VERSION,
    RubricError,
    RubricResult,
    count_list_items,
    count_sentences,
    count_words,
    default_rubrics,
    parse_rubric,
    score,
)

WHERE = "rubric of prompt 'p1'"


def checks(rubric: dict, text: str):
    return score(parse_rubric(rubric, WHERE), text).checks


def only(rubric: dict, text: str):
    (c,) = checks(rubric, text)
    return c


# ------------------------------------------------------------------------------------ facets
def test_any_facet_passes_on_one_term_case_insensitively():
    c = only({"facets": [{"name": "retrieval", "any": ["retriev", "search", "lookup"]}]}, "It RETRIEVES documents.")
    assert (c.name, c.kind, c.passed, c.why) == ("facet: retrieval", "facet", True, "found 'retriev'")


def test_any_facet_fails_naming_all_terms():
    c = only({"facets": [{"any": ["retriev", "search", "lookup"]}]}, "The cat sat on the mat.")
    assert not c.passed and c.why == "none of retriev, search, lookup found"
    assert c.name == "facet: any of retriev, search, lookup"  # default name derived from the terms


def test_all_facet_needs_every_term():
    rubric = {"facets": [{"name": "generation", "all": ["generat", "answer"]}]}
    assert only(rubric, "It generates an answer.").passed
    c = only(rubric, "It generates text.")
    assert not c.passed and c.why == "missing 'answer'"


def test_regex_facet_is_case_insensitive_and_reports_the_match():
    rubric = {"facets": [{"name": "mentions an LLM", "regex": r"\bLLMs?\b|language model"}]}
    c = only(rubric, "Big llms are slow.")
    assert c.passed and c.why == "matched 'llms' at char 4"
    c = only(rubric, "SLLM is not a word match.")  # \b keeps it from matching inside SLLM
    assert not c.passed and c.why.startswith("no match for /")


def test_facet_regex_spans_lines():
    c = only({"facets": [{"regex": r"first.*second"}]}, "First:\nfoo\nSecond: bar")
    assert c.passed


# ---------------------------------------------------------------------------------- bounds
@pytest.mark.parametrize("bounds, text, passed, name, why", [
    ({"min": 1, "max": 2}, "One. Two. Three.", False, "sentences 1–2", "3 sentences, expected at most 2"),
    ({"min": 1, "max": 2}, "One. Two.", True, "sentences 1–2", "2 sentences, expected 1–2"),
    ({"min": 2}, "Only one.", False, "sentences ≥ 2", "1 sentence, expected at least 2"),
    ({"exactly": 2}, "One. Two. Three.", False, "sentences = 2", "3 sentences, expected exactly 2"),
    ({"exactly": 2}, "One. Two", True, "sentences = 2", "2 sentences, expected exactly 2"),
])
def test_sentence_bounds(bounds, text, passed, name, why):
    c = only({"sentences": bounds}, text)
    assert (c.kind, c.passed, c.name, c.why) == ("sentences", passed, name, why)


def test_word_bounds():
    c = only({"words": {"max": 3}}, "one two three four")
    assert (c.name, c.passed, c.why) == ("words ≤ 3", False, "4 words, expected at most 3")
    assert only({"words": {"max": 3}}, "one two three").passed


def test_list_item_bounds():
    c = only({"list_items": {"exactly": 3}}, "- a\n- b")
    assert (c.name, c.kind, c.passed) == ("list items = 3", "list_items", False)
    assert c.why == "2 list items, expected exactly 3"
    assert only({"list_items": {"exactly": 3}}, "- a\n- b\n- c").passed


# ------------------------------------------------------------------------------- forbidden
def test_forbidden_plain_string_is_case_insensitive_substring():
    c = only({"forbidden": ["As an AI"]}, "Well, as an ai model I think so.")
    assert (c.name, c.kind, c.passed) == ("forbidden: As an AI", "forbidden", False)
    assert c.why == "matched 'as an ai' at char 6"
    c = only({"forbidden": ["As an AI"]}, "RAG retrieves documents.")
    assert c.passed and c.why == "'As an AI' does not occur"


def test_forbidden_plain_string_is_not_a_regex():
    assert only({"forbidden": ["a.c"]}, "abc").passed
    assert not only({"forbidden": ["a.c"]}, "see a.c here").passed


def test_forbidden_re_prefix_is_a_regex():
    rubric = {"forbidden": [r"re:\bsorry\b"]}
    c = only(rubric, "I am SORRY, but no.")
    assert not c.passed and c.why == "matched 'SORRY' at char 5" and c.name == r"forbidden: re:\bsorry\b"
    assert only(rubric, "Sorrybot answers.").passed  # word boundary respected


# --------------------------------------------------------------------------------- counting
@pytest.mark.parametrize("text, n", [
    ("", 0),
    ("  \n\n ", 0),
    ("No final period here", 1),
    ("Use tools, e.g. search engines, i.e. retrieval, etc. It works.", 2),
    ("Use tools, e.g. search, etc. and then answer.", 1),
    ("Model A scored 3.5 points vs. 2.1 for model B. Then it stopped", 2),
    ("The U.S. market grew. Done!", 2),
    ("1. First item\n2. Second item\n3. Third item", 3),
    ("1) Local data. Stays put.\n2) Cheaper", 3),
    ("Steps: 1. do this. 2. do that.", 2),
    ("- **Privacy**: data stays on device\n- *Cost*: no API fees.", 2),
    ("**Bold claim.** Another one!", 2),
    ("Wait... what?! Yes.", 3),
    ('He said "stop." Then he left.', 2),
    ("This sentence is hard\nwrapped across lines.", 1),
    ("# Title\n**Retrieval-Augmented Generation:**\n\nRAG retrieves docs. It then answers.", 2),
    ("Here is code:\n```\nx = 1. y = 2.\n```\nDone.", 2),
])
def test_count_sentences(text, n):
    assert count_sentences(text) == n


@pytest.mark.parametrize("text, n", [
    ("", 0),
    ("SLM-based model's", 2),
    ("3.5 GB of RAM, 1,000 tokens", 6),
    ("**bold** - dash", 2),
    ("don’t stop", 2),
])
def test_count_words(text, n):
    assert count_words(text) == n


def test_count_list_items():
    text = "Intro:\n- dash\n* star\n• bullet\n1. dot\n2) paren\n   - nested\n10. ten\nplain line"
    assert count_list_items(text) == 7
    assert count_list_items("---\n**bold**\n3.5 GB is a lot\n-no space\n* * *\n- ") == 0


# -------------------------------------------------------------------------------- parsing
def test_invalid_regex_names_facet_and_where():
    with pytest.raises(RubricError) as e:
        parse_rubric({"facets": [{"name": "x", "regex": "("}]}, WHERE)
    assert str(e.value).startswith("rubric of prompt 'p1': facet 'x': invalid regex '(': missing )")


def test_invalid_forbidden_regex():
    with pytest.raises(RubricError, match=r"p1'.*forbidden entry 're:\[': invalid regex"):
        parse_rubric({"forbidden": ["fine", "re:["]}, WHERE)


@pytest.mark.parametrize("data, message", [
    ({"facets": [{"any": ["a"]}], "facetz": []}, "unknown key 'facetz'"),
    ({"facets": [{"name": "f", "any": ["a"], "anyy": ["b"]}]}, "facet 'f': unknown key 'anyy'"),
    ({"sentences": {"min": 1, "maximum": 2}}, "sentences: unknown key 'maximum'"),
    ({"sentences": {"min": 3, "max": 1}}, "sentences: min 3 is greater than max 1"),
    ({"words": {"exactly": 2, "min": 1}}, "words: 'exactly' excludes 'min' and 'max'"),
    ({"list_items": {"min": -1}}, "list_items: min: Input should be greater than or equal to 0"),
    ({"words": {}}, "words: give min, max or exactly"),
    ({"facets": [{"name": "f", "any": ["a"], "regex": "b"}]}, "facet 'f': needs exactly one of any/all/regex"),
    ({"facets": [{"name": "f"}]}, "facet 'f': needs exactly one of any/all/regex, got none"),
    ({"facets": [{"any": []}]}, "facet #1: any"),
    ({"facets": [{"regex": "x*"}]}, "matches empty text"),
    ({}, "rubric defines no checks"),
    (["not", "a", "mapping"], "must be a mapping"),
])
def test_bad_rubrics_raise_with_where(data, message):
    with pytest.raises(RubricError) as e:
        parse_rubric(data, WHERE)
    assert str(e.value).startswith(WHERE + ": ") and message in str(e.value)
    assert isinstance(e.value, ValueError)


# -------------------------------------------------------------------------------- scoring
def test_score_is_passed_over_total_in_a_fixed_order():
    rubric = {"facets": [{"any": ["retriev"]}, {"all": ["x", "y"]}], "sentences": {"exactly": 1},
              "words": {"max": 100}, "list_items": {"min": 1}, "forbidden": ["As an AI"], "weight": 2.0}
    r = score(parse_rubric(rubric, WHERE), "It retrieves data.")
    assert [c.kind for c in r.checks] == ["facet", "facet", "sentences", "words", "list_items", "forbidden"]
    assert [c.passed for c in r.checks] == [True, False, True, True, False, True]
    assert (r.passed, r.total, r.score, r.version) == (4, 6, 4 / 6, RUBRIC_ENGINE_VERSION)
    assert RubricResult.model_validate_json(r.model_dump_json()) == r  # stored in results files


# ------------------------------------------------------------------------------ defaults
GOOD = {
    "rag-two-sentences": (
        "Retrieval augmented generation first retrieves relevant documents from an external knowledge source, "
        "such as a vector database, using the user's query. The language model then generates an answer "
        "grounded in that retrieved context, which reduces hallucinations."),
    "privacy-benefits": (
        "1. Data never leaves the device, so sensitive prompts stay private.\n"
        "2. No third-party provider can log or leak conversations, reducing breach risk.\n"
        "3. Easier compliance with GDPR and data-residency rules."),
    "size-latency": (
        "Larger models have more parameters, so every generated token needs more computation and more memory "
        "bandwidth to stream the weights from RAM or VRAM. On consumer hardware with limited memory and modest "
        "GPUs or CPUs, this makes each token slower, which raises latency."),
    "slm-scenarios": (
        "1. On-device assistants: an SLM runs offline on a phone or laptop, keeping data private with low latency.\n"
        "2. High-volume classification: a small model is far cheaper to serve than an LLM when cost matters."),
}


def test_default_rubrics_cover_the_shipped_prompts_and_parse():
    rubrics = default_rubrics()
    assert set(rubrics) == set(GOOD)
    for pid, data in rubrics.items():
        parse_rubric(data, f"rubric of prompt '{pid}'")
    rubrics["rag-two-sentences"]["sentences"] = {"exactly": 9}
    assert default_rubrics()["rag-two-sentences"]["sentences"] == {"exactly": 2}  # fresh copies


@pytest.mark.parametrize("pid", sorted(GOOD))
def test_default_rubrics_contrast_good_and_off_topic(pid):
    rubric = parse_rubric(default_rubrics()[pid], pid)
    good = score(rubric, GOOD[pid])
    assert good.score >= 0.75, [c for c in good.checks if not c.passed]
    assert score(rubric, "The cat sat on the mat.").score <= 0.34


def test_default_compute_facet_is_not_fooled_by_ram_inside_parameter():
    rubric = parse_rubric(default_rubrics()["size-latency"], "size-latency")
    compute = next(c for c in score(rubric, "More parameters make it slower.").checks if "compute" in c.name)
    assert not compute.passed
