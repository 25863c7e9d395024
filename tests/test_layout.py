"""Tables fit the screen: at 1280 px and at a 390 px phone, no table on the home, run, model and
selection pages is wider than the content column, and a prompt page's answer cards fit and wrap.
Material wraps tables in a scroll container, so only a browser can tell: each page is opened in
headless Chromium inside an iframe of the given width (headless windows are at least 500 px
wide), measures its tables and cards and reports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from bench.report.render import slug
from tests.conftest import Script, collect
from tests.site_helpers import mkdocs_build, project_copy

MEASURE = """<script>
window.addEventListener('load', () => {
  const over = [];
  document.querySelectorAll('article table').forEach((t, i) => {
    const w = t.getBoundingClientRect().width, c = t.closest('article').getBoundingClientRect().width;
    if (w > c + 1) over.push(`table ${i}: ${Math.round(w)} px in ${Math.round(c)} px`);
  });
  document.querySelectorAll('article .bench-answer').forEach((a, i) => {
    const w = a.getBoundingClientRect().width, c = a.closest('article').getBoundingClientRect().width;
    if (w > c + 1 || a.scrollWidth > a.clientWidth + 1) over.push(`answer card ${i}: ${a.scrollWidth} px in ${Math.round(w)} px`);
    a.querySelectorAll('pre > code').forEach(code => {
      if (code.scrollWidth > code.clientWidth + 1) over.push(`answer ${i} scrolls: ${code.scrollWidth} px in ${code.clientWidth} px`);
    });
  });
  parent.postMessage({page: location.pathname, width: window.innerWidth, over: over}, '*');
});
</script></body>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_no_table_overflows_at_1280_and_390_px(server, tmp_path):
    long_a, long_b = "smollm2-135m-instruct-q4_1-gguf", "gemma-3-270m-it-qat-q4_k_m-gguf"
    server.set_model(long_a, Script(ttft_s=0.01, itl_s=0.001))
    server.set_model(long_b, Script(ttft_s=0.02, itl_s=0.002))
    for _ in range(2):
        out = collect(server, f"{long_a},{long_b}", rounds=1, warmup=0, results_dir=tmp_path / "results")
    project = project_copy(tmp_path / "proj", tmp_path / "results")
    assert mkdocs_build(project).returncode == 0
    site = project / "site"
    pages = ["index.html", f"report/runs/{slug(out.run.run_id)}/index.html", f"report/models/{slug(long_a)}/index.html",
             "report/selection/index.html", "report/prompts/rag-two-sentences/index.html"]
    for page in pages:
        path = site / page
        path.write_text(path.read_text().replace("</body>", MEASURE, 1))
    frames = "".join(f'<iframe src="{(site / p).as_uri()}" width="{w}" height="600"></iframe>'
                     for p in pages for w in (1280, 390))
    harness = tmp_path / "harness.html"
    harness.write_text(f"""<html><body>{frames}<script>
const got = [];
addEventListener('message', e => {{ got.push(e.data);
  if (got.length === {2 * len(pages)}) document.body.setAttribute('data-result', JSON.stringify(got)); }});
</script></body></html>""")
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--allow-file-access-from-files", f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1400,900",
         "--virtual-time-budget=8000", "--dump-dom", harness.as_uri()], capture_output=True, text=True, timeout=180).stdout
    found = re.search(r'data-result="([^"]*)"', dom)
    assert found, "the pages did not report (chromium could not load them)"
    results = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert sorted(r["width"] for r in results) == [390] * len(pages) + [1280] * len(pages)
    overflowing = [(r["page"].split("/site/")[-1], r["width"], r["over"]) for r in results if r["over"]]
    assert not overflowing, overflowing
