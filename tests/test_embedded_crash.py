"""The embedded runtime's crash handling, with a stand-in server that crashes as llama-cpp-python
0.3.36 does on AMX CPUs (SIGSEGV on the first request with extra buffer types on). No CPU here
has AMX, so the stand-in is the only way every path runs on every machine; the real server runs
in tests/test_embedded.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.runtimes import embedded

FAKE = Path(__file__).with_name("fake_llama_launcher.py")


class StandIn(embedded.LocalServer):
    def command(self) -> list[str]:
        return [sys.executable, str(FAKE), str(self._workdir / "settings.json")]


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "check_runtime", lambda: "test")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    made = []

    def make(mode: str) -> StandIn:
        s = StandIn("m", model, settings=embedded.Settings(extra_bufts=mode), log_path=tmp_path / "logs" / "m.log")
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def test_auto_falls_back_to_off_when_the_server_dies_on_its_first_request(server, monkeypatch):
    monkeypatch.setattr(embedded, "cpu_has_amx", lambda: False)
    s = server("auto")
    facts = s.start()
    settings = facts.runtime_settings
    assert settings["extra_bufts"] is False
    assert "died on its first request" in settings["extra_bufts_reason"]
    assert "was killed by SIGSEGV (signal 11)" in settings["extra_bufts_reason"]
    assert "general protection fault" in settings["extra_bufts_reason"]  # its last output
    assert s.died() is None  # the second server, without them, answers


def test_auto_on_an_amx_cpu_starts_with_them_off(server, monkeypatch):
    monkeypatch.setattr(embedded, "cpu_has_amx", lambda: True)
    facts = server("auto").start()
    assert facts.runtime_settings["extra_bufts"] is False
    assert "this CPU has AMX" in facts.runtime_settings["extra_bufts_reason"]


def test_forced_on_is_kept_and_a_crash_is_reported_as_one(server):
    s = server("on")
    facts = s.start()
    assert facts.runtime_settings["extra_bufts"] is True
    assert s._first_request_survives() is False
    why = s.died()
    assert why.startswith("the embedded server for m was killed by SIGSEGV (signal 11)")
    assert f"full log: {s.log_path}" in why and s.log_path.is_file()


def test_exit_texts_name_the_signal():
    assert embedded.exit_text(3) == "exited with code 3"
    assert embedded.exit_text(-11) == "was killed by SIGSEGV (signal 11)"
    assert "out-of-memory killer" in embedded.exit_text(-9) and "SIGKILL" in embedded.exit_text(-9)
