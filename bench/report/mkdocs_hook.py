"""MkDocs hook: re-render the generated pages before every build, so `mkdocs serve` is always current.

Loop-free: render rewrites only pages whose content changed. A results file that cannot be read is
a warning naming the file (the other runs still render), which `mkdocs build --strict` turns into
a failure. Enabled in mkdocs.yml with ``hooks: [bench/report/mkdocs_hook.py]``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bench.config import results_dir
from bench.report.render import render
from bench.report.story import site

log = logging.getLogger("mkdocs.hooks.bench")


def on_pre_build(config, **kwargs) -> None:
    from mkdocs.exceptions import PluginError

    from bench.errors import BenchError

    root = Path(config.config_file_path).parent
    results = results_dir(default=root / "results")
    try:
        where = site(config.get("site_url"), bool(config.get("use_directory_urls", True)))
        report, problems = render(results, Path(config.docs_dir), site=where)
    except BenchError as e:
        raise PluginError(f"bench: {e}") from None
    for message in [p.message for p in problems] + report.warnings:
        log.warning("bench: %s", message)
    if report.written or report.removed:
        log.info("bench: rendered %d page(s), removed %d", len(report.written), len(report.removed))
