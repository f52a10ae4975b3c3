"""The `host` profile's parts that need no cluster: the suites that need the serving stack skip on it
with one line (before any preflight), its preflight's one-line refusals, and the ledger hand-over
and kept record that --keep-cluster and seamcheck-cluster rest on."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ProfileError
from harness.host.cluster import HostCluster
from harness.host.kept import read_kept, remove_kept, reuse_kept, write_kept
from harness.host.netns import NodeNetns
from harness.host.node import HostNode
from harness.ledger.ledger import Ledger
from harness.ledger.records import read_state
from harness.profiles.host import NOT_INSTALLED, HostProfile
from tests.inner import REPO_ROOT, inner_env


def test_the_stack_suites_skip_on_host_with_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "--profile", "host",
                           "-m", "conformance or canary or chaos", "scenarios"], cwd=REPO_ROOT, env=inner_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    skips = [ln for ln in done.stdout.splitlines() if ln.startswith("SKIPPED")]
    assert skips and all(ln.endswith(f"host: {NOT_INSTALLED}") for ln in skips), skips[:5]
    assert "passed" not in done.stdout.splitlines()[-1] and "error" not in done.stdout.splitlines()[-1]


def test_the_profile_says_which_suites_it_cannot_run() -> None:
    assert {s: HostProfile.suite_skip_reason(s) for s in ("conformance", "canary", "chaos", "matrix")} == {
        "conformance": NOT_INSTALLED, "canary": NOT_INSTALLED, "chaos": NOT_INSTALLED, "matrix": None}
    assert "\n" not in NOT_INSTALLED


def test_preflight_refuses_in_one_line_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.host.build as hbuild
    from harness.host import preflight

    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    with pytest.raises(ProfileError, match="needs root"):
        preflight.preflight_machine()
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 0)
    monkeypatch.setattr(preflight.shutil, "which", lambda tool: None if tool == "ipset" else f"/usr/sbin/{tool}")
    with pytest.raises(ProfileError, match=r"needs ipset \(apt-get install -y ipset\)"):
        preflight.preflight_machine()
    monkeypatch.setattr(preflight.shutil, "which", lambda tool: f"/usr/sbin/{tool}")
    monkeypatch.setattr(hbuild, "find", lambda recipe, **kw: None)
    with pytest.raises(ProfileError) as refused:
        preflight.preflight_machine()
    assert "not in the host build cache: etcd, kubernetes" in str(refused.value)
    assert "`python -m harness.host.build`" in str(refused.value) and "\n" not in str(refused.value)


def test_hand_over_keeps_everything_and_a_later_sweep_removes_it(tmp_path: Path) -> None:
    from harness.ledger.records import Entry
    from harness.ledger.undo import sweep

    record = Ledger(tmp_path / "ledgers", "hand-over")
    folder = record.make_dir("seamcheck-host-", tmp_path)
    path = record.path
    token, entries = record.hand_over()
    assert token == record.token and [e["kind"] for e in entries] == ["dir"]
    assert not path.exists() and folder.is_dir()  # nothing undone, the ledger closed
    assert read_state(path).entries == {}
    swept = sweep([Entry(e["id"], e["kind"], e["what"], "created") for e in entries], token)
    assert swept.removed == {"dir": 1} and not folder.exists()


def _fake_cluster(tmp_path: Path) -> HostCluster:
    work = tmp_path / "seamcheck-host-x"
    work.mkdir()
    netns = NodeNetns(name="schost-abcdef", host_if="schabcdef", host_ip="10.214.1.1", node_ip="10.214.1.2")
    cluster = HostCluster(addons=True, gpu_node=True, enforcer="kube-router", work=work, netns=netns)
    cluster.nodes = [HostNode(name="seamcheck-host", netns=netns, work=work / "nodes/a", pod_cidr="10.244.0.0/24",
                              cgroup_root="/seamcheck-abcdef-0", bin=cluster.bin)]
    return cluster


def test_a_kept_record_round_trips_and_down_removes_what_it_lists(tmp_path: Path) -> None:
    cluster = _fake_cluster(tmp_path)
    path = write_kept(cluster, "t0k3n", [{"id": 1, "kind": "dir", "what": {"path": str(cluster.work)}}],
                      tmp_path / "host-cluster.kept.json")
    record = read_kept(path)
    assert record["server"] == "https://10.214.1.2:6443" and record["enforcer"] == "kube-router"
    assert [n["name"] for n in record["nodes"]] == ["seamcheck-host"] and record["token"] == "t0k3n"
    swept = remove_kept(path)
    assert swept.removed == {"dir": 1} and not cluster.work.exists() and not path.exists()
    assert remove_kept(path) is None


def test_a_kept_cluster_that_no_longer_answers_is_removed_instead_of_reused(tmp_path: Path) -> None:
    cluster = _fake_cluster(tmp_path)
    path = write_kept(cluster, "t0k3n", [{"id": 1, "kind": "dir", "what": {"path": str(cluster.work)}}],
                      tmp_path / "host-cluster.kept.json")
    assert reuse_kept(path) is None  # no CA, no API server: gone (a reboot, a kill)
    assert not path.exists() and not cluster.work.exists()
    path.write_text("{ half written")
    assert reuse_kept(path) is None and not path.exists()


def test_too_few_inotify_instances_is_refused_naming_the_sysctl(tmp_path) -> None:
    from harness.host.preflight import inotify_problem

    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    problem = inotify_problem(str(limit))
    assert problem == ("--profile host: fs.inotify.max_user_instances is 128, the cluster's kubelets and containerd "
                       "need about 512; raise it with `sysctl -w fs.inotify.max_user_instances=512` (as kind asks of "
                       "its hosts)")
    limit.write_text("512\n")
    assert inotify_problem(str(limit)) is None
    assert inotify_problem(str(tmp_path / "absent")) is None
