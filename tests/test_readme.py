"""The README's test command is what CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [b.split("\n```")[0].strip() for b in blocks]


def test_readme_starts_with_two_commands_and_ci_runs_the_second():
    run_cmd, test_cmd = _commands()
    assert "bench collect" in run_cmd and "mkdocs build" in run_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd.replace("python3 -m venv .venv && ", "") in ci
