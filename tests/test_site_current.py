"""The home page never goes blank while good data exists: a failed latest run is a banner, and the
figures come from each model's latest good run of the same workload on the same machine."""

from __future__ import annotations

from bench.report import render as render_mod
from bench.report.render import slug
from tests.conftest import Script, collect

PROFILES = {"p": render_mod.scoring.Profile(weights={"latency": 1})}


def test_a_failed_latest_run_is_a_banner_over_the_good_figures(server, tmp_path):
    server.set_model("fast", Script(ttft_s=0.05, itl_s=0.002))
    server.set_model("slow", Script(ttft_s=0.2, itl_s=0.01))
    collect(server, "fast,slow", rounds=1, warmup=0, results_dir=tmp_path / "r")
    good = collect(server, "fast,slow", rounds=1, warmup=0, results_dir=tmp_path / "r").run
    server.set_model("fast", Script(status=500))
    server.set_model("slow", Script(status=500))
    failed = collect(server, "fast,slow", rounds=1, warmup=0, results_dir=tmp_path / "r").run
    from bench.results import store

    runs, _ = store.load_all(tmp_path / "r")
    pages = render_mod.build_pages(runs, [], PROFILES)
    home = pages["index.md"]
    assert '!!! warning "The latest run failed"' in home
    assert f"The latest run, [{failed.run_id}](report/runs/{slug(failed.run_id)}.md#failures), failed:" in home
    assert "0 of 6 requests succeeded" in home.replace("\n    ", " ")  # 3 each before the models were stopped
    assert "none eligible" not in home and "**[fast](report/models/fast.md)**" in home  # the pick survives
    assert f"(from [{good.run_id}](report/runs/{slug(good.run_id)}.md)," in home and "older)" in home
    assert "| 4/4 |" in home  # the good run's requests, not the failed one's 0/4
    assert "**[fast]" in pages["report/selection.md"] or "fast" in pages["report/selection.md"]


def test_a_good_latest_run_shows_no_banner_and_no_sources(server, tmp_path):
    server.set_model("m", Script())
    collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path / "r")
    from bench.results import store

    runs, _ = store.load_all(tmp_path / "r")
    home = render_mod.build_pages(runs, [], PROFILES)["index.md"]
    assert "The latest run failed" not in home and "(from [" not in home


def test_another_workload_is_not_mixed_in(server, tmp_path):
    server.set_model("m", Script())
    collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path / "r", max_tokens=20)
    server.set_model("m", Script(status=500))
    collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path / "r")
    from bench.results import store

    runs, _ = store.load_all(tmp_path / "r")
    home = render_mod.build_pages(runs, [], PROFILES)["index.md"]
    assert "The latest run failed" in home and "(from [" not in home  # the good run's workload differs


def test_bench_show_never_cuts_model_names_in_a_narrow_terminal(server):
    from rich.console import Console

    from bench.report.terminal import summary_table

    long_name = "smollm2-135m-instruct-q4_1-from-a-long-registry-path"
    server.set_model(long_name, Script())
    server.set_model("gemma-3-270m", Script())
    run = collect(server, f"{long_name},gemma-3-270m", rounds=1, warmup=0).run
    for width in (80, 60, 200):
        console = Console(width=width, record=True, color_system=None)
        console.print(summary_table(run, console.width))
        text = console.export_text()
        assert long_name in text and "gemma-3-270m" in text and "…" not in text, (width, text)
        assert max(len(line) for line in text.splitlines()) <= width


def test_two_machines_are_two_groups_and_never_compared(server, tmp_path):
    import json

    from bench.results import store

    server.set_model("m", Script(ttft_s=0.01, itl_s=0.001))
    laptop = [collect(server, "m", rounds=3, warmup=0, results_dir=tmp_path / "r").path for _ in range(2)]
    server.set_model("m", Script(ttft_s=0.05, itl_s=0.005))  # the other machine is five times slower
    ci = [collect(server, "m", rounds=3, warmup=0, results_dir=tmp_path / "r").path for _ in range(2)]
    for path, name in [(p, "laptop-16gb") for p in laptop] + [(p, "ci-runner") for p in ci]:
        data = json.loads(path.read_text())
        data["machine"]["name"] = name
        path.write_text(json.dumps(data))
    runs, _ = store.load_all(tmp_path / "r")
    pages = render_mod.build_pages(runs, [], PROFILES)
    index = pages["report/machines.md"]
    assert "[ci-runner](machines/ci-runner.md)" in index and "[laptop-16gb](machines/laptop-16gb.md)" in index
    assert f"[{laptop[1].stem}]" in pages["report/machines/laptop-16gb.md"]
    assert laptop[0].stem not in pages["report/machines/ci-runner.md"]
    assert "figures from this machine only; [1 other machine](report/machines.md)" in pages["index.md"]
    changes = pages["report/changes.md"]
    assert ci[0].stem in changes and laptop[1].stem not in changes  # the newest run against its own machine's
    assert "+400%" not in changes and "-80%" not in changes
    from bench.analysis import compare

    d = compare.diff(compare.resolve_side(str(laptop[1]), tmp_path / "r"), compare.resolve_side(str(ci[1]), tmp_path / "r"))
    assert [r.status for r in d.rows] == ["not comparable"] and "laptop-16gb vs ci-runner" in d.rows[0].reason


def test_a_run_file_without_a_utc_offset_does_not_break_the_home_page(server, tmp_path):
    """started_at comes from files (untrusted): one written without an offset beside one with 'Z'
    must not crash the render (an aware minus a naive time raises TypeError)."""
    server.set_model("m", Script())
    good = collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path / "r").run
    server.set_model("m", Script(status=500))
    collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path / "r")
    from bench.results import store

    runs, _ = store.load_all(tmp_path / "r")
    older = next(r for r in runs if r.run_id == good.run_id)
    older.started_at = older.started_at.replace("Z", "").split("+")[0]  # naive, as another tool might write
    home = render_mod.build_pages(runs, [], PROFILES)["index.md"]
    assert f"(from [{good.run_id}](report/runs/{slug(good.run_id)}.md)," in home and "older)" in home
