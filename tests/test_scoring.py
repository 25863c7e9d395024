"""The selection framework: direction-aware normalization, missing data, constraints, robustness."""

from __future__ import annotations

import pytest

from bench.analysis.scoring import Candidate, Constraints, Profile, rank, sub_scores


def cand(model, *, mean=1.0, p95=1.0, tps=50.0, mem=1e9, disk=1e8, quality=None, license="Apache-2.0", ttft=0.1):
    return Candidate(model=model, e2e_mean_s=mean, e2e_p95_s=p95, ttft_p50_s=ttft, decode_tps=tps, memory_bytes=mem,
                     disk_bytes=disk, quality=quality, quality_sources=(), license=license)


def test_ratio_to_best_is_direction_aware():
    subs = sub_scores([cand("a", mean=1, p95=2, tps=100, mem=1e9), cand("b", mean=2, p95=4, tps=50, mem=2e9)], Profile())
    assert subs["a"]["latency"] == 1.0 and subs["b"]["latency"] == 0.5  # lower is better
    assert subs["a"]["throughput"] == 1.0 and subs["b"]["throughput"] == 0.5  # higher is better
    assert subs["b"]["memory"] == 0.5


def test_missing_data_is_missing_not_zero():
    cands = [cand("a", mem=None, quality=None), cand("b", mem=1e9, quality=None)]
    r = rank(cands, "p", Profile(weights={"memory": 1, "latency": 1}))
    a = next(row for row in r.rows if row.model == "a")
    assert a.sub["memory"] is None and "memory" in a.missing
    assert a.total == 1.0 and a.coverage == 0.5  # scored on latency alone, says so
    assert all(row.sub["quality"] is None for row in r.rows)


def test_constraints_exclude_with_reasons():
    cands = [cand("big", mem=3 * 2**30), cand("nc", license="CC-BY-NC-4.0"), cand("ok", mem=2**29)]
    profile = Profile(constraints=Constraints(max_memory_mb=2048, allowed_licenses=["Apache-2.0", "MIT"]))
    r = rank(cands, "p", profile)
    assert r.top.model == "ok"
    big = next(row for row in r.rows if row.model == "big")
    assert big.rank is None and "memory 3072 MiB > 2048 MiB" in big.excluded[0]
    nc = next(row for row in r.rows if row.model == "nc")
    assert "license CC-BY-NC-4.0 not allowed" in nc.excluded


def test_license_allowance():
    subs = sub_scores([cand("a"), cand("g", license="Gemma Terms of Use"), cand("u", license=None)], Profile())
    assert subs["a"]["license"] == 1.0 and 0 < subs["g"]["license"] < 1 and subs["u"]["license"] is None


def test_robustness_is_seeded_and_reflects_margins():
    clear = [cand("a", mean=1, p95=1, tps=100), cand("b", mean=3, p95=3, tps=30)]
    close = [cand("a", mean=1, p95=1, tps=50), cand("b", mean=1.05, p95=1.05, tps=55)]
    p = Profile(weights={"latency": 0.5, "throughput": 0.5})
    assert rank(clear, "p", p).robustness == 1.0
    r1, r2 = rank(close, "p", p, seed=3), rank(close, "p", p, seed=3)
    assert r1.robustness == r2.robustness
    assert 0.2 < r1.robustness < 0.9


def test_bad_profiles_are_rejected():
    with pytest.raises(ValueError, match="unknown dimension"):
        Profile(weights={"speed": 1})
    with pytest.raises(ValueError, match="at least one"):
        Profile(weights={"latency": 0})


def test_profiles_in_bench_yaml(tmp_path):
    from bench.config import load_profiles
    from bench.errors import ConfigError

    (tmp_path / "bench.yaml").write_text(
        "profiles:\n  tiny:\n    weights: {memory: 1}\n    constraints: {max_memory_mb: 512}\n")
    profiles = load_profiles(tmp_path / "bench.yaml")
    assert "edge-summarizer" in profiles and profiles["tiny"].constraints.max_memory_mb == 512
    (tmp_path / "bench.yaml").write_text("profiles:\n  tiny:\n    weights: {sped: 1}\n")
    with pytest.raises(ConfigError, match="unknown dimension"):
        load_profiles(tmp_path / "bench.yaml")


def test_unknown_data_cannot_satisfy_a_constraint():
    cands = [cand("remote", mem=None, license="Apache-2.0"), cand("local", mem=2**29, license=None)]
    r = rank(cands, "p", Profile(constraints=Constraints(max_memory_mb=1024, allowed_licenses=["Apache-2.0"])))
    assert r.top is None
    reasons = {row.model: row.excluded for row in r.rows}
    assert reasons["remote"] == ["memory unknown: cannot check the limit"]
    assert reasons["local"] == ["license unknown not allowed"]


def test_edge_profile_requires_a_commercial_license():
    from bench.analysis.scoring import DEFAULT_PROFILES

    cands = [cand("nc", license="CC-BY-NC-4.0", mem=2**28), cand("ok", license="Apache-2.0", mem=2**29)]
    assert rank(cands, "edge", DEFAULT_PROFILES["edge-summarizer"]).top.model == "ok"
