"""License names from what runtimes report: SPDX ids, aliases, full texts; unknown stays unknown."""

from bench.runtimes.base import merge_facts
from bench.runtimes.license import MAX_RAW_CHARS, license_facts, license_name


def test_ids_and_aliases_become_spdx_ids():
    assert license_name("apache-2.0") == "Apache-2.0"  # Foundry Local's catalog spelling
    assert license_name(" MIT ") == "MIT"
    assert license_name("Apache 2.0") == "Apache-2.0"
    assert license_name("cc-by-nc-4.0") == "CC-BY-NC-4.0"


def test_full_texts_are_named_by_their_title():
    # openings of the published texts, as Ollama's /api/show returns them in "license"
    apache = "\n                                 Apache License\n                           Version 2.0, January 2004\n"
    assert license_name(apache) == "Apache-2.0"
    assert license_name("MIT License\n\nCopyright (c) Microsoft Corporation.\n\nPermission is hereby granted, "
                        "free of charge, to any person obtaining a copy") == "MIT"
    assert license_name("LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\nLlama 3.2 Version Release Date: September 25, "
                        "2024") == "Llama 3.2 Community License"
    assert license_name("Gemma Terms of Use \n\nLast modified: February 21, 2024") == "Gemma Terms of Use"


def test_an_unrecognised_license_is_kept_raw_and_unknown_never_guessed():
    assert license_name("Some Research License v1: you may not ...") is None
    assert license_name(None) is None and license_name(42) is None and license_name("  ") is None
    # a text that quotes another license far below its title is not named after the quote
    assert license_name("Acme Model License\n" + "x" * 1000 + "Apache License, Version 2.0") is None
    facts = license_facts("Acme Model License\n" + "y" * 10_000, "Ollama /api/show")
    assert "license" not in facts and len(facts["license_raw"]) == MAX_RAW_CHARS
    assert "does not recognise" in facts["unknown"]["license"]
    named = license_facts("apache-2.0", "LM Studio")
    assert named["license"] == "Apache-2.0" and named["sources"] == {"license": "LM Studio"}


def test_merged_facts_keep_sources_of_known_facts_and_drop_what_became_known():
    a = {"disk_bytes": 10, "sources": {"disk_bytes": "/api/tags"}, "unknown": {"license": "not reported"}}
    b = {"license": "MIT", "sources": {"license": "/api/show", "vram_bytes": "/api/ps"}, "vram_bytes": None}
    merged = merge_facts(a, b)
    assert merged == {"disk_bytes": 10, "license": "MIT", "sources": {"disk_bytes": "/api/tags",
                                                                      "license": "/api/show"}}
