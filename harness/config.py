"""What a run was asked to do: the options every profile reads (from pytest options or env vars)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PROFILES", "StackConfig"]

PROFILES = ("local", "kind", "kind-gpu", "cloud")


@dataclass(frozen=True)
class StackConfig:
    profile: str = "local"
    matrix_row: str | None = None
    matrix_file: Path | None = None
    reports_dir: Path = Path("reports")
    keep_stack: bool = False
    namespace: str = "model-serving"
    artifact_store: str = "s3"  # s3 (moto's S3-compatible server) | files
    ports: dict[str, int] = field(default_factory=dict)  # component -> fixed port (0/absent: free)
    env_cache: Path | None = None
    component_deadline_s: float = 120.0
    isvc_deadline_s: float = 300.0
    pipeline_deadline_s: float = 900.0
