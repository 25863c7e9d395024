"""The selection framework's memory, footprint and license figures say where they came from."""

from bench.report.views import figure_sources
from bench.results.schema import ModelInfo


def test_measured_memory_wins_and_runtime_reported_memory_says_so():
    measured = ModelInfo(name="m", endpoint="e", license="MIT", extra={
        "peak_rss_bytes": 300 * 2**20, "runtime_memory_bytes": 1, "disk_bytes": 90 * 2**20,
        "sources": {"disk_bytes": "Ollama /api/tags size", "license": "Ollama /api/show"}})
    f = figure_sources(measured)
    assert f["memory"] == "300 MiB (measured by bench: resident memory of the server)"
    assert f["footprint"] == "90 MiB (Ollama /api/tags size)" and f["license"] == "MIT (Ollama /api/show)"
    remote = ModelInfo(name="m", endpoint="e", extra={"runtime_memory_bytes": 2 * 2**30,
                                                        "sources": {"runtime_memory_bytes": "Ollama /api/ps"}})
    assert figure_sources(remote)["memory"] == "2.0 GiB (Ollama /api/ps)"


def test_missing_figures_show_the_recorded_reason_and_untrusted_text_is_escaped():
    info = ModelInfo(name="m", endpoint="e", extra={"unknown": {"disk_bytes": "the service is not on this machine",
                                                                "license": "<script>x</script>"}})
    f = figure_sources(info)
    assert f["footprint"] == "– (the service is not on this machine)" and f["memory"] == "– (not reported)"
    assert "<script>" not in f["license"] and "&lt;script&gt;" in f["license"]
