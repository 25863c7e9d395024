"""Everything outside bench is untrusted: results files and page manifests arrive through pull
requests. A planted or broken file never crashes bench, and bench never deletes or overwrites a
file it did not generate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.render import MARKER, render, slug
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
