"""The host build tool: the [host] versions table, cache keys, cache hits, the lock, and the version
stamps of built binaries (the last only where the component is already in the cache: a cold build
takes minutes to tens of minutes, so those tests skip with the command that builds it)."""
from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from harness.host import build as hbuild
from harness.host import cache as hcache
from harness.host.recipes import DEFAULT_COMPONENTS, GoStep, Recipe, recipes
from harness.host.toolchain import HostBuildError
from harness.host.versions import load_host_versions
from harness.matrix import DEFAULT_MATRIX_PATH, MatrixError, load_matrix
from harness.procs import run_command

HAVE_GO = shutil.which("go") is not None or Path("/usr/local/go/bin/go").is_file()
needs_go = pytest.mark.skipif(not HAVE_GO, reason="no Go toolchain (put Go 1.26 at /usr/local/go/bin/go)")


# ------------------------------------------------------------------ the [host] table
def test_the_repository_table_loads_and_matrix_still_validates() -> None:
    versions = load_host_versions()
    assert versions.kubernetes == "1.30.14"
    assert versions.row in load_matrix().rows  # matrix.py still accepts the file with [host] in it
    assert set(DEFAULT_COMPONENTS) <= set(versions.components)
    assert all(c.why for c in versions.components.values())
    assert set(recipes(versions)) == set(versions.components)


def _with_host(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_MATRIX_PATH.read_text()
    assert old in text
    path = tmp_path / "matrix.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("old", "new", "message"), [
    ('kubernetes = "1.30.14"\nwhy', 'kubernetes = "1.27.3"\nwhy', "outside row"),
    ('[host.components.etcd]\nversion = "3.5.15"', '[host.components.etcd]\nversion = "v3.5.15"', "without a v"),
    ('[host.components.kubelet]\nversion = "1.30.14"', '[host.components.kubelet]\nversion = "1.30.4"',
     "must be the same release"),
    ('commit = "9a5533382d84999e4e79642e1ec0f8bfa9b70ba8"', 'commit = "9a55333"', "full 40-hex"),
    ('row = "kfp2.3-mlflow2.17-kserve0.14"\nkubernetes', 'row = "nope"\nkubernetes', "unknown matrix row"),
])
def test_malformed_host_table_names_the_fix(tmp_path: Path, old: str, new: str, message: str) -> None:
    # HostVersionError is a MatrixError; an unknown row is matrix.py's own MatrixError.
    with pytest.raises(MatrixError, match=message):
        load_host_versions(_with_host(tmp_path, old, new))


def test_a_version_above_the_rows_range_is_allowed(tmp_path: Path) -> None:
    # "else the oldest served release above the row's range": 1.31 passes the range check.
    path = _with_host(tmp_path, 'kubernetes = "1.30.14"\nwhy', 'kubernetes = "1.31.0"\nwhy')
    text = path.read_text().replace('version = "1.30.14"', 'version = "1.31.0"')
    path.write_text(text)
    assert load_host_versions(path).kubernetes == "1.31.0"


# ------------------------------------------------------------------ stamps and keys
def test_kubernetes_ldflags_stamp_what_version_sh_stamps() -> None:
    r = recipes(load_host_versions())
    ld = r["kubernetes"].steps[0].ldflags
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, val in (("gitVersion", "v1.30.14"), ("gitMajor", "1"), ("gitMinor", "30"),
                         ("buildDate", "2025-06-18T19:07:32Z")):
            assert f"-X {pkg}.{key}={val}" in ld
    assert ld.startswith("-s -w ")
    assert not r["kubernetes"].steps[0].cgo and r["kubelet"].steps[0].cgo  # as hack/lib/golang.sh
    assert "-X github.com/containerd/containerd/version.Version=v1.7.18" in r["containerd"].steps[0].ldflags
    assert "main.gitCommit=v1.1.13-0-g58aa920" in r["runc"].steps[0].ldflags


def test_cache_key_changes_with_every_input() -> None:
    base = {"module": "m", "version": "v1", "go": "go1.26.8", "steps": [{"ldflags": "-X a=b"}]}
    key = hcache.input_key(base)
    assert key == hcache.input_key(json.loads(json.dumps(base)))  # canonical: same input, same key
    assert len(key) == 16
    for change in ({"version": "v2"}, {"go": "go1.26.9"}, {"steps": [{"ldflags": "-X a=c"}]}):
        assert hcache.input_key({**base, **change}) != key


@needs_go
def test_wrapper_that_disagrees_with_the_table_is_refused(tmp_path: Path) -> None:
    real = recipes(load_host_versions())["etcd"]
    gomod = tmp_path / "gomod"
    shutil.copytree(hbuild.GOMOD_DIR / "etcd", gomod / "etcd")
    text = (gomod / "etcd" / "go.mod").read_text().replace("server/v3 v3.5.15", "server/v3 v3.5.16")
    (gomod / "etcd" / "go.mod").write_text(text)
    with pytest.raises(HostBuildError, match=r"requires go.etcd.io/etcd/server/v3 v3.5.16 .* says v3.5.15"):
        hbuild.wrapper_files(real, gomod)


# ------------------------------------------------------------------ a tiny component, built for real
_TINY = """package main

import "os"

var version = "unset"

func main() { os.Stdout.WriteString(version + "\\n") }
"""


def _tiny(tmp_path: Path, stamp: str = "v1.2.3") -> tuple[Recipe, Path]:
    gomod = tmp_path / "gomod"
    (gomod / "tiny").mkdir(parents=True, exist_ok=True)
    (gomod / "tiny" / "go.mod").write_text("module example.invalid/tiny\n\ngo 1.21\n")
    (gomod / "tiny" / "go.sum").write_text("")
    (gomod / "tiny" / "tools.go").write_text(_TINY)
    recipe = Recipe(name="tiny", module="example.invalid/tiny", version="v0.0.0", wrapper="tiny",
                    steps=(GoStep(packages=("example.invalid/tiny",), outputs=("tiny",),
                                  ldflags=f"-X main.version={stamp}"),), upstream="test")
    return recipe, gomod


@pytest.fixture
def warm_gocache(monkeypatch: pytest.MonkeyPatch) -> None:
    # The runtime compiles once into the machine's host build cache (kept across CI runs), not
    # into every test's empty folder.
    monkeypatch.setenv("SEAMCHECK_HOST_GOCACHE", str(hcache.cache_root() / "go-build"))


@needs_go
def test_second_build_is_a_cache_hit_and_the_stamp_is_in_the_binary(tmp_path: Path, warm_gocache: None) -> None:
    recipe, gomod = _tiny(tmp_path)
    lines: list[str] = []
    first = hbuild.ensure(recipe, root=tmp_path / "cache", say=lines.append, gomod=gomod)
    assert not first.cached and any("cold build" in line for line in lines)
    assert (first.dir / hcache.MARKER).is_file()
    out = run_command([str(first.binary("tiny"))], what="tiny", timeout=30)
    assert out.stdout.strip() == "v1.2.3"
    record = json.loads((first.dir / hcache.MARKER).read_text())
    assert record["binaries"]["tiny"]["bytes"] > 0 and record["wall_s"] >= 0 and "cpu_s" in record
    assert record["steps"][0]["packages_total"] > 1
    second = hbuild.ensure(recipe, root=tmp_path / "cache", say=lines.append, gomod=gomod)
    assert second.cached and second.dir == first.dir and second.lookup_s < 2.0
    assert sum("cold build" in line for line in lines) == 1
    # Another stamp is another input: another entry, built anew.
    other, _ = _tiny(tmp_path, stamp="v9.9.9")
    third = hbuild.ensure(other, root=tmp_path / "cache", say=lines.append, gomod=gomod)
    assert not third.cached and third.dir != first.dir


@needs_go
def test_half_built_folder_is_rebuilt(tmp_path: Path, warm_gocache: None) -> None:
    recipe, gomod = _tiny(tmp_path)
    entry = hcache.entry_for("tiny", hbuild.inputs_of(recipe, gomod=gomod), tmp_path / "cache")
    entry.dir.mkdir(parents=True)
    (entry.dir / "tiny").write_text("half a binary")  # no marker: an interrupted build
    built = hbuild.ensure(recipe, root=tmp_path / "cache", say=lambda _l: None, gomod=gomod)
    assert not built.cached
    assert run_command([str(built.binary("tiny"))], what="tiny", timeout=30).stdout.strip() == "v1.2.3"


@needs_go
def test_two_concurrent_builds_build_once(tmp_path: Path, warm_gocache: None) -> None:
    recipe, gomod = _tiny(tmp_path, stamp="v4.5.6")
    lines: list[str] = []
    results = []

    def go() -> None:
        results.append(hbuild.ensure(recipe, root=tmp_path / "cache", say=lines.append, gomod=gomod))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 2 and sum(not r.cached for r in results) == 1
    assert sum("cold build" in line for line in lines) == 1


def test_unknown_component_names_the_known_ones() -> None:
    with pytest.raises(HostBuildError, match="unknown component 'kube-apiservr'.*kubernetes"):
        hbuild.resolve_names(["kube-apiservr"], recipes(load_host_versions()))
    assert hbuild.resolve_names(["kubectl", "etcd", "kube-apiserver"], recipes(load_host_versions())) == \
        ["etcd", "kubernetes"]


# ------------------------------------------------------------------ stamps of the real binaries (cached only)
def _cached(component: str) -> hbuild.Built:
    if not HAVE_GO:
        pytest.skip("no Go toolchain")
    recipe = recipes(load_host_versions())[component]
    found = hbuild.find(recipe)
    if found is None:
        pytest.skip(f"{component} is not in the host build cache (cold build: python -m harness.host.build {component})")
    return found


def test_built_kube_apiserver_reports_the_stamped_version() -> None:
    built = _cached("kubernetes")
    out = run_command([str(built.binary("kube-apiserver")), "--version"], what="kube-apiserver --version", timeout=60)
    assert out.stdout.strip() == "Kubernetes v1.30.14"
    client = run_command([str(built.binary("kubectl")), "version", "--client", "-o", "json"], what="kubectl",
                         timeout=60)
    info = json.loads(client.stdout)["clientVersion"]
    assert (info["gitVersion"], info["major"], info["minor"]) == ("v1.30.14", "1", "30")
    assert info["buildDate"] == "2025-06-18T19:07:32Z"


@pytest.mark.parametrize(("component", "binary", "argv", "expect"), [
    ("kubelet", "kubelet", ["--version"], "Kubernetes v1.30.14"),
    ("etcd", "etcd", ["--version"], "Git SHA: 9a55333"),
    ("containerd", "containerd", ["--version"],
     "containerd github.com/containerd/containerd v1.7.18 ae71819c4f5e67bb4d5ae76a6b735f29cc25774e"),
    ("runc", "runc", ["--version"], "commit: v1.1.13-0-g58aa920"),
    ("coredns", "coredns", ["-version"], "CoreDNS-1.11.3"),
    ("cni-plugins", "bridge", [], "CNI bridge plugin v1.5.1"),
])
def test_built_binaries_report_their_release_version(component: str, binary: str, argv: list[str],
                                                      expect: str) -> None:
    built = _cached(component)
    out = run_command([str(built.binary(binary)), *argv], what=f"{binary} version", timeout=60)
    assert expect in out.stdout + out.stderr
