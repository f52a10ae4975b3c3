"""An installed seamcheck (a wheel, not a checkout) gives a project every fixture, its package data
(the chaos experiments, kind manifests, the locustfile, the faulty models' code, the matrix) and a
PYTHONPATH for role environments that holds only the harness."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.inner import REPO_ROOT

DATA = ("harness/matrix.toml", "harness/chaos/experiments/storage-uri-without-model.json",
        "harness/chaos/experiments/selftest/rollbacks-after-failed-method.json", "harness/locustfiles/v2_inference.py",
        "harness/cluster/manifests/cluster.yaml.j2", "harness/cluster/manifests/stack/20-mlflow.yaml.j2",
        "harness/faults/model_code/seamcheck_fault_model.py", "harness/report/templates/summary.md.j2",
        "harness/host/images.toml", *(f"harness/host/gomod/{c}/{f}" for c in ("kubernetes", "kube-router", "etcd")
                                      for f in ("go.mod", "go.sum", "tools.go")))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, installed (without dependencies: this interpreter has them) into a folder."""
    wheels, target = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO_ROOT)],
                   check=True, timeout=300, capture_output=True)
    (wheel,) = wheels.glob("seamcheck-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [d for d in DATA if d not in names]
    assert not missing, f"package data missing from the wheel: {missing}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, timeout=300, capture_output=True)
    return target


def _run(installed: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The installed copy first on the path, run from a folder with no checkout around it.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(installed), "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_an_installed_seamcheck_gives_every_fixture(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    result = _run(installed, tmp_path, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider", "test_x.py")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for fixture in ("stack", "role_envs", "pipeline_run", "deployment", "compiled_pipeline", "chaos_control",
                    "side_by_side", "seam", "run_settings", "stack_config"):
        assert f"\n{fixture}" in result.stdout or result.stdout.startswith(fixture), f"no fixture {fixture}"


def test_an_installed_seamcheck_finds_its_data_and_keeps_role_envs_clean(installed: Path, tmp_path: Path) -> None:
    code = ("import harness, harness.paths as p, harness.chaos.runner as r, harness.load as l; "
            "print(harness.__file__); print(len(r.experiment_files())); print(l.LOCUSTFILE.is_file()); "
            "print(p.role_pythonpath())")
    result = _run(installed, tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    where, experiments, locustfile, pythonpath = result.stdout.split()
    assert where.startswith(str(installed)), where
    assert int(experiments) >= 6 and locustfile == "True"
    shim = Path(pythonpath)
    assert shim != installed and sorted(p.name for p in shim.iterdir()) == ["harness"], \
        "a role environment would import the harness's site-packages"
    assert (shim / "harness").resolve() == (installed / "harness").resolve()
