"""Selection-framework profiles: the dimensions, their weights and hard constraints.

Profiles are configuration (bench.yaml's ``profiles:`` extends and overrides the shipped ones);
``bench.analysis.scoring`` applies them to measured runs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DIMENSIONS = ("latency", "throughput", "memory", "quality", "footprint", "license")
DIMENSION_INFO = {
    "latency": "end-to-end latency, mean and p95 (lower is better)",
    "throughput": "median decode tokens/s (higher is better)",
    "memory": "peak resident memory of the server (lower is better)",
    "quality": "rubric / annotation / judge score, 0–1 (higher is better)",
    "footprint": "model file size on disk (lower is better)",
    "license": "use allowance of the license (higher is better)",
}

# How freely a license lets a team ship a model in a commercial product (0..1). Profiles may override.
LICENSE_ALLOWANCE = {
    "apache-2.0": 1.0,
    "mit": 1.0,
    "bsd-3-clause": 1.0,
    "bsd-2-clause": 1.0,
    "openrail": 0.7,
    "gemma terms of use": 0.6,
    "llama 3 community license": 0.6,
    "llama 3.1 community license": 0.6,
    "llama 3.2 community license": 0.6,
    "qwen license": 0.6,
    "cc-by-4.0": 0.9,
    "cc-by-nc-4.0": 0.0,
    "research only": 0.0,
}


# Licenses that allow shipping the model in a commercial product (some with use policies).
COMMERCIAL_LICENSES = ["Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "Gemma Terms of Use",
                       "Llama 3.1 Community License", "Llama 3.2 Community License"]


class Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_memory_mb: float | None = Field(None, gt=0)
    max_disk_mb: float | None = Field(None, gt=0)
    max_ttft_ms: float | None = Field(None, gt=0)
    min_decode_tps: float | None = Field(None, gt=0)
    allowed_licenses: list[str] | None = None


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    constraints: Constraints = Field(default_factory=Constraints)
    license_allowance: dict[str, float] = Field(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        unknown = set(self.weights) - set(DIMENSIONS)
        if unknown:
            raise ValueError(f"unknown dimension(s) {sorted(unknown)}; dimensions: {', '.join(DIMENSIONS)}")
        if any(w < 0 for w in self.weights.values()) or not any(w > 0 for w in self.weights.values()):
            raise ValueError("weights must be >= 0 with at least one > 0")


DEFAULT_WEIGHTS = {"latency": 0.25, "throughput": 0.15, "memory": 0.15, "quality": 0.25, "footprint": 0.1,
                   "license": 0.1}

DEFAULT_PROFILES: dict[str, Profile] = {
    "edge-summarizer": Profile(
        description=(
            "The workshop scenario: an edge platform team picks the default model for an offline "
            "meeting-notes summarizer on consumer laptops. Quality and latency matter most; the model "
            "must fit in 2 GiB and be licensed for commercial use."
        ),
        weights=dict(DEFAULT_WEIGHTS),
        constraints=Constraints(max_memory_mb=2048, allowed_licenses=COMMERCIAL_LICENSES),
    ),
    "fastest": Profile(
        description="Interactive use where responsiveness is everything.",
        weights={"latency": 0.5, "throughput": 0.3, "quality": 0.2},
    ),
    "smallest": Profile(
        description="Distribution to constrained devices: memory and download size first.",
        weights={"memory": 0.4, "footprint": 0.3, "quality": 0.2, "latency": 0.1},
    ),
}
