"""A model's license as runtimes report it (an id, a name, or the whole text) -> one name bench
compares and scores: the SPDX id where the license has one, else the license's own title
(``Llama 3.2 Community License``, ``Gemma Terms of Use``), which the selection framework's
license table knows. The raw text is always kept beside it; nothing is guessed: a text bench
does not recognise stays unnamed (None), with the raw text recorded.
"""

from __future__ import annotations

import re
from typing import Any

MAX_RAW_CHARS = 4000  # license texts are kept, bounded: a server may send megabytes

# SPDX ids (https://spdx.org/licenses/) of licenses models ship under, by lower-case id or alias.
SPDX_IDS = {i.lower(): i for i in (
    "Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "GPL-2.0-only", "GPL-3.0-only", "LGPL-2.1-only",
    "LGPL-3.0-only", "AGPL-3.0-only", "MPL-2.0", "CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0",
    "CC-BY-NC-SA-4.0", "CC-BY-NC-ND-4.0", "Unlicense", "BigScience-OpenRAIL-M", "CreativeML-OpenRAIL-M",
)}
SPDX_ALIASES = {"apache 2.0": "Apache-2.0", "apache-2": "Apache-2.0", "apache license 2.0": "Apache-2.0",
                "apache2": "Apache-2.0", "mit license": "MIT", "gpl-3.0": "GPL-3.0-only", "gpl-2.0": "GPL-2.0-only",
                "agpl-3.0": "AGPL-3.0-only", "lgpl-3.0": "LGPL-3.0-only", "lgpl-2.1": "LGPL-2.1-only",
                "cc-by-nc-sa-4.0": "CC-BY-NC-SA-4.0", "bigscience-openrail-m": "BigScience-OpenRAIL-M",
                "creativeml-openrail-m": "CreativeML-OpenRAIL-M"}

# The opening of a full license text -> its name. Checked against each license's published text.
TEXT_MARKERS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"apache license\s*,?\s*version 2\.0", re.I), "Apache-2.0"),
    (re.compile(r"^\s*mit license\b|permission is hereby granted, free of charge, to any person", re.I), "MIT"),
    (re.compile(r"llama 3\.3 community license", re.I), "Llama 3.3 Community License"),
    (re.compile(r"llama 3\.2 community license", re.I), "Llama 3.2 Community License"),
    (re.compile(r"llama 3\.1 community license", re.I), "Llama 3.1 Community License"),
    (re.compile(r"meta llama 3 community license", re.I), "Llama 3 Community License"),
    (re.compile(r"llama 2 community license", re.I), "Llama 2 Community License"),
    (re.compile(r"gemma terms of use", re.I), "Gemma Terms of Use"),
    (re.compile(r"tongyi qianwen license|qwen license agreement", re.I), "Qwen License"),
    (re.compile(r"gnu general public license\s+version 3", re.I), "GPL-3.0-only"),
    (re.compile(r"mozilla public license,?\s+version 2\.0", re.I), "MPL-2.0"),
    (re.compile(r"creative commons attribution 4\.0 international", re.I), "CC-BY-4.0"),
    (re.compile(r"attribution-noncommercial 4\.0 international", re.I), "CC-BY-NC-4.0"),
]


def license_name(raw: Any) -> str | None:
    """The SPDX id (or the license's own title) for what a runtime reported; None when unknown."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    text = raw[:MAX_RAW_CHARS]
    key = text.strip().lower()
    if key in SPDX_IDS:
        return SPDX_IDS[key]
    if key in SPDX_ALIASES:
        return SPDX_ALIASES[key]
    head = text[:600]  # a license names itself at the top; a long text may quote others further down
    for pattern, name in TEXT_MARKERS:
        if pattern.search(head):
            return name
    return None


def license_facts(raw: Any, source: str) -> dict[str, Any]:
    """``license`` (the name, when recognised), ``license_raw`` (bounded) and where it came from;
    an unrecognised text is kept raw with ``license`` unknown and the reason."""
    if not isinstance(raw, str) or not raw.strip():
        return {}
    facts: dict[str, Any] = {"license_raw": raw[:MAX_RAW_CHARS], "sources": {"license": source}}
    name = license_name(raw)
    if name:
        facts["license"] = name
    else:
        facts["unknown"] = {"license": f"{source} gave a license bench does not recognise (kept as license_raw); "
                                       "set license: for the model in bench.yaml"}
    return facts
