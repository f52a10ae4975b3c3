"""The kind cluster's lifecycle and the profiles' one-line errors, with FAKE `kind` and `docker`
programs (scripts written here) because no Docker engine runs on this machine:

* create from the rendered config, reuse by name, --keep-cluster, deletion at teardown, and
  deletion when start fails or the session is interrupted (SIGTERM) while kind is creating;
* choosing kind / kind-gpu / cloud where their prerequisites are missing stops the session at
  collection with one `ERROR: seamcheck: ...` line (no traceback), including on this machine as
  it is (no Docker daemon).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from harness.cluster.errors import ClusterError
from harness.cluster.render import render_kind_config
from harness.matrix import load_matrix
from harness.settings import StackConfig
from tests.host_fixtures import Kube
from tests.inner import inner_env, run_inner, write_test

FAKE_KIND = """#!/usr/bin/env bash
# A FAKE kind: keeps its clusters in $STATE/clusters; logs every call to $STATE/kind.log.
STATE="{state}"
echo "$*" >> "$STATE/kind.log"
name=""; config=""
args=("$@")
for ((i=0; i<${{#args[@]}}; i++)); do
  [[ "${{args[i]}}" == --name ]] && name="${{args[i+1]}}"
  [[ "${{args[i]}}" == --config ]] && config="${{args[i+1]}}"
done
case "$1 $2" in
  "version "*) echo "kind {version} go1.22.6 linux/amd64" ;;
  "get clusters")
    if [[ -s "$STATE/clusters" ]]; then cat "$STATE/clusters"; else echo "No kind clusters found." >&2; fi ;;
  "create cluster")
    echo "$name" >> "$STATE/clusters"; cp "$config" "$STATE/config-$name.yaml"
    if [[ -n "{create_sleep}" ]]; then sleep {create_sleep}; fi
    if [[ -n "{create_fails}" ]]; then
      echo "ERROR: failed to create cluster: node(s) not ready" >&2; exit 1
    fi ;;
  "get kubeconfig")
    cat <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{{name: kind-$name, cluster: {{server: "{server}"}}}}]
contexts: [{{name: kind-$name, context: {{cluster: kind-$name, user: kind-$name}}}}]
current-context: kind-$name
users: [{{name: kind-$name, user: {{token: fake}}}}]
KUBECONFIG
    ;;
  "delete cluster")
    grep -vx "$name" "$STATE/clusters" > "$STATE/clusters.new"; mv "$STATE/clusters.new" "$STATE/clusters" ;;
  *) echo "fake kind: unexpected $*" >&2; exit 2 ;;
esac
"""

FAKE_DOCKER = """#!/usr/bin/env bash
# A FAKE docker client: `info` answers as a daemon would (or as a missing one), `port` lists mappings.
STATE="{state}"
case "$1" in
  info) if [[ -n "{daemon_down}" ]]; then
          echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
          exit 1
        fi
        if [[ "$3" == "{{{{.DockerRootDir}}}}" ]]; then echo "$STATE"; else echo "27.1.1"; fi ;;
  port) cat "$STATE/ports" 2>/dev/null ;;
  *) exit 2 ;;
esac
"""


def fake_tools(tmp_path: Path, *, version: str = "v0.24.0", server: str = "http://127.0.0.1:9",
               daemon_down: bool = False, create_sleep: str = "", create_fails: bool = False,
               kubectl: bool = True) -> Path:
    """A bin folder with fake kind and docker, and the real kubectl and git (stand-ins where missing)."""
    bin_dir = tmp_path / "bin"
    state = tmp_path / "kind-state"
    bin_dir.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    (bin_dir / "kind").write_text(FAKE_KIND.format(state=state, version=version, server=server,
                                                   create_sleep=create_sleep, create_fails="1" if create_fails else ""))
    (bin_dir / "docker").write_text(FAKE_DOCKER.format(state=state, daemon_down="1" if daemon_down else ""))
    for script in ("kind", "docker"):
        (bin_dir / script).chmod(0o755)
    for tool in (["kubectl"] if kubectl else []) + ["git", "bash", "cat", "cp", "grep", "mv", "sleep"]:
        real = shutil.which(tool)
        if real and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(real)
    for tool in (["kubectl"] if kubectl else []) + ["git"]:
        if not (bin_dir / tool).exists():  # a machine without it: these tests never reach its use
            (bin_dir / tool).write_text("#!/usr/bin/env bash\nexit 0\n")
            (bin_dir / tool).chmod(0o755)
    return bin_dir


def kind_log(tmp_path: Path) -> list[str]:
    path = tmp_path / "kind-state" / "kind.log"
    return path.read_text().splitlines() if path.exists() else []


def _profile(cls_name: str, monkeypatch: pytest.MonkeyPatch, bin_dir: Path, **config):
    from harness.profiles import kind

    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    profile_name = "kind-gpu" if cls_name == "KindGpuProfile" else "kind"
    return getattr(kind, cls_name)(StackConfig(profile=profile_name, kind_bin=str(bin_dir / "kind"),
                                               kind_cluster="seamcheck-test", **config),
                                   load_matrix().row(None))


# ------------------------------------------------------------------------------ lifecycle
def test_create_then_delete_at_teardown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = _profile("KindProfile", monkeypatch, fake_tools(tmp_path))
    profile._connect()
    assert profile.created
    config = (tmp_path / "kind-state" / "config-seamcheck-test.yaml").read_text()
    assert config == render_kind_config(profile.spec)
    assert yaml.safe_load(profile.kubeconfig.read_text())["current-context"] == "kind-seamcheck-test"
    assert profile.kubectl.kubeconfig == profile.kubeconfig and profile.cluster_versions["kind"] == "v0.24.0"
    profile.teardown()
    assert kind_log(tmp_path)[-1] == "delete cluster --name seamcheck-test"
    assert (tmp_path / "kind-state" / "clusters").read_text().strip() == ""


def test_keep_cluster_keeps_what_it_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    profile = _profile("KindProfile", monkeypatch, fake_tools(tmp_path), keep_cluster=True)
    profile.say = said.append
    profile._connect()
    profile.teardown()
    assert not any(line.startswith("delete") for line in kind_log(tmp_path))
    assert any("keeping cluster 'seamcheck-test' (--keep-cluster)" in line for line in said)


def test_an_existing_cluster_is_reused_with_its_published_ports_and_left_in_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_tools(tmp_path)
    (tmp_path / "kind-state" / "clusters").write_text("other\nseamcheck-test\n")
    ports = {30080: 41080, 30081: 41888, 30082: 41900, 30083: 41500, 30084: 41901, 30085: 41090}
    (tmp_path / "kind-state" / "ports").write_text(
        "".join(f"{node}/tcp -> 127.0.0.1:{host}\n" for node, host in ports.items()) + "6443/tcp -> 127.0.0.1:39000\n")
    profile = _profile("KindProfile", monkeypatch, bin_dir)
    profile._connect()
    assert not profile.created and not any(line.startswith("create") for line in kind_log(tmp_path))
    assert profile._endpoints() == {"ingress": "http://127.0.0.1:41080", "kfp": "http://127.0.0.1:41888",
                                    "kfp_minio": "http://127.0.0.1:41900", "mlflow": "http://127.0.0.1:41500",
                                    "minio": "http://127.0.0.1:41901", "prometheus": "http://127.0.0.1:41090"}
    profile.teardown()
    assert not any(line.startswith("delete") for line in kind_log(tmp_path))
    (tmp_path / "kind-state" / "ports").write_text("6443/tcp -> 127.0.0.1:39000\n")
    with pytest.raises(ClusterError, match="does not publish node port 30080 .* recreate it"):
        profile._endpoints()


def test_a_creation_that_fails_half_way_is_still_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = _profile("KindProfile", monkeypatch, fake_tools(tmp_path, create_fails=True))
    with pytest.raises(ClusterError, match="(?s)creating kind cluster 'seamcheck-test'.*node\\(s\\) not ready"):
        profile._connect()
    profile.teardown()
    assert kind_log(tmp_path)[-1] == "delete cluster --name seamcheck-test"


def test_kind_gpu_prepares_the_fake_gpu_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_profile,
                                             kube: Kube) -> None:
    """On the host cluster's GPU-pool node (kind-gpu's labels and taint, a real kubelet), then on an
    API server with no such node."""
    gpu = host_profile.cluster.gpu_node_name
    profile = _profile("KindGpuProfile", monkeypatch, fake_tools(tmp_path))
    profile.api = host_profile.api
    profile._after_connect()
    assert profile.gpu == {gpu: {"node": gpu, "capacity": "1", "allocatable": "1"}}
    assert profile.versions()["cluster"]["fake_gpu_nodes"] == profile.gpu
    profile.api = kube.api
    with pytest.raises(ClusterError, match="no node labelled seamcheck.io/role=gpu"):
        profile._after_connect()
    profile.teardown()


# ------------------------------------------------------------------------------ through pytest
def _inner(tmp_path: Path, bin_dir: Path, *args: str, extra_env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    write_test(tmp_path)
    env = inner_env({"PATH": f"{bin_dir}:{Path(sys.executable).parent}", "SEAMCHECK_KIND_CLUSTER": "seamcheck-test",
                     **(extra_env or {})})
    return run_inner(tmp_path, *args, env=env, timeout=timeout)


def test_start_failure_deletes_the_cluster_it_created(tmp_path: Path) -> None:
    """The API never answers (kubeconfig points at a closed port): the session errors, and the
    stack fixture's teardown deletes the cluster."""
    bin_dir = fake_tools(tmp_path)
    result = _inner(tmp_path, bin_dir, "--profile", "kind")
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "does not answer" in output and "[seamcheck] kind: deleting cluster 'seamcheck-test'" in output
    assert kind_log(tmp_path)[-1] == "delete cluster --name seamcheck-test"


def test_sigterm_while_kind_creates_deletes_the_cluster(tmp_path: Path) -> None:
    bin_dir = fake_tools(tmp_path, create_sleep="60")
    write_test(tmp_path)
    env = inner_env({"PATH": f"{bin_dir}:{Path(sys.executable).parent}", "SEAMCHECK_KIND_CLUSTER": "seamcheck-test"})
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--reports-dir",
                             str(tmp_path / "reports"), str(tmp_path / "test_inner.py"), "--profile", "kind"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("create cluster") for line in kind_log(tmp_path)):
            assert time.monotonic() < deadline and proc.poll() is None, "kind create was never called"
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert kind_log(tmp_path)[-1] == "delete cluster --name seamcheck-test", output


def test_sigkill_while_kind_creates_still_deletes_the_cluster(tmp_path: Path) -> None:
    """No teardown runs after SIGKILL: the reaper runs the undo command the ledger recorded before
    `kind create cluster` started."""
    bin_dir = fake_tools(tmp_path, create_sleep="60")
    write_test(tmp_path)
    env = inner_env({"PATH": f"{bin_dir}:{Path(sys.executable).parent}", "SEAMCHECK_KIND_CLUSTER": "seamcheck-test",
                     "SEAMCHECK_LEDGER_DIR": str(tmp_path / "ledgers")})
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--reports-dir",
                             str(tmp_path / "reports"), str(tmp_path / "test_inner.py"), "--profile", "kind"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("create cluster") for line in kind_log(tmp_path)):
            assert time.monotonic() < deadline and proc.poll() is None, "kind create was never called"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while kind_log(tmp_path)[-1] != "delete cluster --name seamcheck-test" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert kind_log(tmp_path)[-1] == "delete cluster --name seamcheck-test", output
    assert "1 undo command" in (tmp_path / "ledgers" / "reaper.log").read_text()


def test_a_live_runs_kind_cluster_is_refused_naming_its_pid(tmp_path: Path) -> None:
    from harness.ledger.ledger import Ledger

    owner = Ledger(tmp_path / "ledgers", "other-run")
    owner.claim("kind-cluster:seamcheck-test")
    try:
        result = _inner(tmp_path, fake_tools(tmp_path), "--profile", "kind",
                        extra_env={"SEAMCHECK_LEDGER_DIR": str(tmp_path / "ledgers")})
        _assert_one_line_error(result, f"kind cluster 'seamcheck-test' belongs to seamcheck run other-run (pytest pid "
                                       f"{os.getpid()}, still running)")
    finally:
        owner.close()


def _assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    errors = [line for line in output.splitlines() if line.startswith("ERROR: seamcheck:")]
    assert len(errors) == 1 and text in errors[0], output
    assert "Traceback" not in output and "[seamcheck] " not in output, output


@pytest.mark.parametrize("profile", ["kind", "kind-gpu"])
def test_missing_kind_is_one_line(tmp_path: Path, profile: str) -> None:
    bin_dir = fake_tools(tmp_path)
    (bin_dir / "kind").unlink()
    _assert_one_line_error(_inner(tmp_path, bin_dir, "--profile", profile),
                           "kind is not installed (not on PATH); install kind >= v0.24")


def test_old_kind_is_one_line(tmp_path: Path) -> None:
    bin_dir = fake_tools(tmp_path, version="v0.17.0")
    _assert_one_line_error(_inner(tmp_path, bin_dir, "--profile", "kind"), "kind v0.17.0 is too old")


def test_missing_docker_is_one_line(tmp_path: Path) -> None:
    bin_dir = fake_tools(tmp_path)
    (bin_dir / "docker").unlink()
    _assert_one_line_error(_inner(tmp_path, bin_dir, "--profile", "kind"), "docker is not installed")


def test_a_docker_daemon_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    bin_dir = fake_tools(tmp_path, daemon_down=True)
    _assert_one_line_error(_inner(tmp_path, bin_dir, "--profile", "kind", "--kind-bin", str(bin_dir / "kind")),
                           "the Docker daemon is not answering (Cannot connect to the Docker daemon at "
                           "unix:///var/run/docker.sock. Is the docker daemon running?)")


def test_choosing_kind_on_this_machine_is_one_line(tmp_path: Path) -> None:
    """This machine as it is: no Docker daemon (and no kind). A fake kind is added only when the
    machine has none, so the real docker client meets the missing daemon."""
    docker = shutil.which("docker")
    daemon = docker and subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0
    if daemon and shutil.which("kind"):
        pytest.skip("this machine has Docker and kind: the kind profile would really start")
    write_test(tmp_path)
    result = run_inner(tmp_path, "--profile", "kind")
    _assert_one_line_error(result, "kind is not installed" if not shutil.which("kind") else "Docker")
    if docker and not daemon:  # with kind present (a fake one), the real client reports the daemon
        bin_dir = fake_tools(tmp_path)
        (bin_dir / "docker").unlink()
        (bin_dir / "docker").symlink_to(docker)
        _assert_one_line_error(_inner(tmp_path, bin_dir, "--profile", "kind"), "the Docker daemon is not answering")


def test_cloud_without_a_usable_kubeconfig_is_one_line(tmp_path: Path) -> None:
    bin_dir = fake_tools(tmp_path)
    _assert_one_line_error(_inner(tmp_path, bin_dir, "--profile", "cloud", "--kubeconfig", str(tmp_path / "nope")),
                           "does not exist; pass the kubeconfig of the cluster to test")
    config = tmp_path / "kubeconfig"
    config.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
        users: [{name: u, user: {token: t}}]
        contexts: [{name: prod, context: {cluster: c, user: u}}]
        current-context: prod
        """))
    _assert_one_line_error(_inner(tmp_path, bin_dir, "--profile", "cloud", "--kubeconfig", str(config),
                                  "--kube-context", "staging"), "context 'staging' is not in")
    _assert_one_line_error(_inner(tmp_path, bin_dir, "--profile", "cloud", "--kubeconfig", str(config)),
                           "the Kubernetes API of context 'prod' does not answer")


def test_cluster_options_reach_the_stack_config(tmp_path: Path) -> None:
    write_test(tmp_path, textwrap.dedent("""\
        from harness.settings import SETTINGS_KEY

        def test_config(pytestconfig):
            c = pytestconfig.stash[SETTINGS_KEY].stack
            assert c.kubeconfig.name == "kc" and c.kube_context == "ctx" and c.kind_bin == "/k"
            assert c.chaos_namespaces == ("a", "b") and c.keep_cluster and c.install_stack
        """))
    env = inner_env({"SEAMCHECK_CHAOS_NAMESPACES": "a, b", "SEAMCHECK_KEEP_CLUSTER": "1"})
    result = run_inner(tmp_path, "--kubeconfig", "kc", "--kube-context", "ctx", "--kind-bin", "/k", "--install-stack",
                       env=env)
    assert result.returncode == 0, result.stdout + result.stderr





def test_too_little_disk_for_docker_is_refused_naming_the_folder_and_the_fix(tmp_path: Path) -> None:
    from harness.cluster.tools import ToolError, check_docker_disk, docker_free_disk_gib

    docker = str(fake_tools(tmp_path) / "docker")
    root, free = docker_free_disk_gib(docker)
    assert root == str(tmp_path / "kind-state") and free > 0
    check_docker_disk(docker, need_gib=0.001)
    with pytest.raises(ToolError, match=rf"^Docker's data folder {root} has [0-9.]+ GiB free; the kind profile needs "
                                        r"about 1e\+06 GiB \(kind keeps every pulled image on every node\)"):
        check_docker_disk(docker, need_gib=1e6)


def test_a_node_images_kindnet_without_network_policies_is_named_and_the_cut_refused(
        tmp_path: Path, monkeypatch, kube: Kube) -> None:
    """kindnet comes from the node image: an image built for kind < v0.24 runs a kindnet whose
    ClusterRole has no networkpolicies rule (as kind's own manifests before commit c3e24ff7). The
    kindnet objects are written to a real kube-apiserver (tests/host_fixtures.py ``kube``)."""
    from harness.profiles.kind import kindnet_policy_problem
    from tests.kube import get

    def kindnet(resources, image):
        return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "kindnet"},
                 "rules": [{"apiGroups": [""], "resources": resources, "verbs": ["list", "watch"]}]},
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kindnet", "namespace": "kube-system"},
                 "spec": {"selector": {"matchLabels": {"app": "kindnet"}}, "template": {
                     "metadata": {"labels": {"app": "kindnet"}},
                     "spec": {"containers": [{"name": "kindnet-cni", "image": image}]}}}}]

    api = kube.api
    assert kindnet_policy_problem(api) is None  # no kindnet: the probe pod decides
    try:
        for obj in kindnet(["nodes", "pods", "namespaces"], "docker.io/kindest/kindnetd:v20240513-cd2ac642"):
            kube.scratch.add(obj)
        problem = kindnet_policy_problem(api)
        assert problem.startswith("the node image's kindnet (docker.io/kindest/kindnetd:v20240513-cd2ac642) predates "
                                  "NetworkPolicy support"), problem
        profile = _profile("KindProfile", monkeypatch, fake_tools(tmp_path))
        profile.api, profile.say = api, lambda _m: None
        profile._after_connect()
        assert profile.cluster_versions["network_policy_enforced"] is False
        with pytest.raises(ClusterError, match="refused to cut the pipeline from MLflow: the node image's kindnet"):
            profile.fault_cut_pipeline_from_mlflow()
        for obj in kindnet(["nodes", "pods", "namespaces", "networkpolicies"], "docker.io/kindest/kindnetd:v20240813"):
            kube.scratch.add(obj)
        assert kindnet_policy_problem(api) is None
        profile.teardown()
    finally:
        from kubernetes import client as k8s

        if get(api, "apps/v1", "DaemonSet", "kindnet", "kube-system") is not None:
            k8s.AppsV1Api(api).delete_namespaced_daemon_set("kindnet", "kube-system")
