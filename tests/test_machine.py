"""The machine a run was made on: a fingerprint of the hardware facts that change results, not
the hostname (many CI runners and cloud images share one; one laptop can be renamed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psutil

from bench.measure import machine as live
from bench.results import store
from bench.results.machines import fingerprint, machine_key, machine_label, same_machine
from bench.results.schema import Machine
from tests.conftest import Script, cli, collect

ROOT = Path(__file__).resolve().parent.parent
BASE = dict(os="Linux-6.8.0-1019-aws-x86_64-with-glibc2.36", python="3.11.7", cpu="AMD EPYC", cores_physical=1,
            cores_logical=2, ram_bytes=24 << 30, gpus=[], os_family="Linux", arch="x86_64", ram_gib=24,
            cpu_features=["avx", "avx2", "fma"])


def test_the_fingerprint_ignores_the_hostname_and_small_ram_drift(monkeypatch):
    first = live.machine_info()
    monkeypatch.setattr(live.socket, "gethostname", lambda: "another-name")
    total = psutil.virtual_memory().total
    monkeypatch.setattr(live.psutil, "virtual_memory", lambda: type("VM", (), {"total": total - (3 << 20)})())
    second = live.machine_info()
    assert first.hostname_hash != second.hostname_hash and first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 12 and first.os_family and first.arch


def test_the_fingerprint_changes_with_the_hardware():
    base = Machine(**BASE)
    assert fingerprint(base) == fingerprint(Machine(**BASE))
    for change in ({"cpu_features": ["avx", "avx2", "fma", "avx512f"]}, {"cores_logical": 4}, {"ram_gib": 32},
                   {"gpus": ["NVIDIA L4, 23034 MiB"]}, {"arch": "aarch64"}, {"cpu": "Intel Xeon"}):
        assert fingerprint(Machine(**{**BASE, **change})) != fingerprint(base), change
    assert fingerprint(Machine(**{**BASE, "os": "Linux-6.9.1-generic-x86_64"})) == fingerprint(base)  # kernel build


def test_same_machine_rules():
    a = Machine(**BASE)
    assert same_machine(a, Machine(**{**BASE, "os": "Linux-6.9.1-x86_64"})) is None
    assert same_machine(a, Machine(**{**BASE, "cpu_features": None})) is None  # an old run: features unknown
    assert same_machine(a, Machine(**{**BASE, "ram_gib": 32, "cpu": "Intel Xeon"})) == (
        "different machines: CPU AMD EPYC vs Intel Xeon; RAM GiB 24 vs 32")
    named = Machine(**{**BASE, "name": "laptop"})
    assert same_machine(named, Machine(**{**BASE, "name": "laptop", "ram_gib": 32})) is None  # the user says so
    assert same_machine(named, Machine(**{**BASE, "name": "ci"})) == "different machines (laptop vs ci)"
    assert machine_key(named) == "laptop" and machine_key(a) == fingerprint(a) if a.fingerprint else True
    assert machine_label(a) == "AMD EPYC · 2 cores · 24 GiB" and machine_label(named) == "laptop"


def test_bench_yaml_names_the_machine_and_a_bad_name_is_a_clean_error(server):
    server.set_model("m", Script())
    Path("bench.yaml").write_text(f"machine: lab-laptop 16GB\nendpoints:\n  - name: e\n    base_url: {server.url}\n")
    r = cli("collect", "--models", "m", "--rounds", "1", "--warmup", "0")
    assert r.exit_code == 0, r.output
    run = store.load_all(Path("results"))[0][0]
    assert run.machine.name == "lab-laptop 16GB" and run.machine.fingerprint
    Path("bench.yaml").write_text("machine: \"<script>\"\n")
    r = cli("collect", "--models", "m")
    assert r.exit_code == 2 and "machine" in r.output and "Traceback" not in r.output


def test_an_older_file_upgrades_with_a_fingerprint_from_what_it_holds(tmp_path):
    src = sorted((ROOT / "results").glob("*.json"))[0]
    data = json.loads(src.read_text())
    assert data["schema_version"] < 6 and "fingerprint" not in data["machine"]  # a committed older run
    shutil.copy(src, tmp_path / src.name)
    run = store.load_run(tmp_path / src.name)
    m = run.machine
    assert (m.os_family, m.arch, m.cpu_features) == ("Linux", "x86_64", None)
    assert m.ram_gib == round(data["machine"]["ram_bytes"] / (1 << 30)) and m.fingerprint == fingerprint(m)
    assert all(s.session == 0 for s in run.samples)


def test_runs_on_renamed_hosts_are_compared_and_other_hardware_is_not(server):
    server.set_model("m", Script(ttft_s=0.01, itl_s=0.001))
    a = collect(server, "m", rounds=3, warmup=0).path
    b = collect(server, "m", rounds=3, warmup=0).path
    data = json.loads(b.read_text())
    data["machine"]["hostname_hash"] = "renamed-host"
    b.write_text(json.dumps(data))
    assert cli("diff", a.stem, b.stem).exit_code == 0
    data["machine"]["cpu_features"] = ["avx", "avx2", "avx512f", "amx_int8"]
    b.write_text(json.dumps(data))
    r = cli("diff", a.stem, b.stem)
    assert r.exit_code == 2 and "CPU features" in r.stderr


def test_bench_machine_names_the_machine_too_and_is_checked(server):
    server.set_model("m", Script())
    from bench.config import resolve

    plan = resolve(None, env={"BENCH_MACHINE": "gha-ubuntu-24.04"}, endpoint=server.url, models="m")
    assert plan.machine_name == "gha-ubuntu-24.04"
    r = cli("collect", "--endpoint", server.url, "--models", "m", env={"BENCH_MACHINE": "bad\nname"})
    assert r.exit_code == 2 and "machine name" in r.output and "Traceback" not in r.output


def test_the_example_ci_workflow_passes_actionlint():
    import subprocess
    import sys

    exe = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    if not Path(exe).exists():
        import pytest

        pytest.skip("actionlint is not installed (pip install -e '.[test]')")
    workflow = ROOT / "examples" / "github" / "bench-matrix.yml"
    done = subprocess.run([exe, "-no-color", str(workflow)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    text = workflow.read_text()
    assert "BENCH_MACHINE: gha-${{ matrix.runner }}" in text and "git pull --rebase" in text
