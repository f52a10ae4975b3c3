"""Prometheus (Debian's package) scraping the model servers and the traffic proxy every second.

Model-server targets change as revisions come and go, so they are a file_sd file that the
serving emulation rewrites; Prometheus picks the change up by itself (inotify), no reload.
Every model-server target carries the labels isvc, namespace, revision and role (stable|canary),
the way a PodMonitor with relabelling would on a cluster. It loads the dashboard's alert rules for
the model servers' and the router's dialects (harness/metrics/rules/local.rules.yml), evaluated at
the scrape interval, so a scenario can ask /api/v1/alerts what fired during its fault.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from harness.binaries import find_binary
from harness.metrics.alerts import LOCAL_RULES_FILE
from harness.metrics.cadence import CADENCE
from harness.ports import LOOPBACK
from harness.procs import ManagedProcess, ProcessRegistry

__all__ = ["PrometheusServer", "ScrapeTarget", "find_prometheus", "start_prometheus"]

SCRAPE_INTERVAL = CADENCE.scrape  # one setting for every profile (harness/metrics/cadence.py)


def find_prometheus() -> str:
    return find_binary("prometheus")


@dataclass(frozen=True)
class ScrapeTarget:
    address: str  # host:port
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class PrometheusServer:
    process: ManagedProcess
    url: str
    targets_file: Path
    ready_seconds: float

    def set_targets(self, targets: Iterable[ScrapeTarget]) -> None:
        groups = [{"targets": [t.address], "labels": dict(t.labels)} for t in targets]
        text = json.dumps(groups, indent=1)
        try:
            if self.targets_file.read_text() == text:
                return  # unchanged: do not make Prometheus re-read it
        except OSError:
            pass
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.targets_file)  # atomic: Prometheus never reads half a file

    def active_targets(self) -> list[dict]:
        data = requests.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=5).json()
        return data["data"]["activeTargets"]


def render_config(targets_file: Path, proxy_metrics: str) -> str:
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL,
                   "scrape_timeout": SCRAPE_INTERVAL},
        "rule_files": [str(LOCAL_RULES_FILE)],
        "scrape_configs": [
            {"job_name": "model-servers",
             "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}]},
            {"job_name": "traffic-proxy", "static_configs": [{"targets": [proxy_metrics]}]},
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def start_prometheus(registry: ProcessRegistry, state: Path, port: int, *, proxy_metrics: str,
                     deadline_s: float = 60.0) -> PrometheusServer:
    binary = find_prometheus()
    home = state / "prometheus"
    (home / "data").mkdir(parents=True, exist_ok=True)
    targets_file = home / "model-servers.json"
    if not targets_file.exists():  # a restart keeps the targets the emulation last published
        targets_file.write_text("[]")
    config = home / "prometheus.yml"
    config.write_text(render_config(targets_file, proxy_metrics))
    argv = [
        binary, f"--config.file={config}", f"--web.listen-address={LOOPBACK}:{port}",
        f"--storage.tsdb.path={home / 'data'}", "--storage.tsdb.retention.time=6h",
        "--web.enable-lifecycle", "--log.level=warn",
    ]
    proc = registry.start(ManagedProcess("prometheus", argv, state / "logs" / "prometheus.log"))
    url = f"http://{LOOPBACK}:{port}"
    seconds = proc.wait_http(f"{url}/-/ready", deadline_s=deadline_s)
    return PrometheusServer(proc, url, targets_file, seconds)
