"""Build the real site (MkDocs or Zensical) from a results folder, in a temp copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project_copy(dest: Path, results: Path) -> Path:
    """mkdocs.yml + hand-written site_src + the hook, pointed at `results`."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "site_src", dest / "site_src", ignore=shutil.ignore_patterns("report", "index.md"))
    (dest / "bench" / "report").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "bench" / "report" / "mkdocs_hook.py", dest / "bench" / "report" / "mkdocs_hook.py")
    shutil.copy(ROOT / "mkdocs.yml", dest / "mkdocs.yml")
    shutil.copytree(ROOT / "overrides", dest / "overrides", dirs_exist_ok=True)
    if results.resolve() != (dest / "results").resolve():
        shutil.copytree(results, dest / "results")
    return dest


def run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    env.pop("BENCH_RESULTS_DIR", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def mkdocs_build(project: Path, strict: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict" if strict else "--no-strict"]
    return run(cmd, project)


def bench(project: Path, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "bench", *args], project)


def zensical_build(project: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("zensical", path=str(Path(sys.executable).parent)) or shutil.which("zensical")
    return run([exe, "build"], project)


def assert_architecture_page(site: Path) -> None:
    """The architecture page is built, and its diagram is the local SVG (no CDN, no Mermaid)."""
    page = (site / "architecture" / "index.html").read_text()
    assert 'src="../assets/architecture.svg"' in page and "mermaid" not in page.lower()
    assert (site / "assets" / "architecture.svg").read_bytes() == (ROOT / "site_src" / "assets" / "architecture.svg").read_bytes()


def feed_links(html: str) -> list[str]:
    """The hrefs of the page head's Atom feed links, entities decoded (engines escape differently)."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Head(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "link" and a.get("rel") == "alternate" and a.get("type") == "application/atom+xml":
                found.append(a.get("href") or "")

    Head().feed(html.split("</head>")[0])
    return found
