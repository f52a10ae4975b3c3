"""Bad input gets a one-line error naming the fix, before any process of the stack starts."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tests.inner import inner_env, run_inner, write_test


def _assert_usage_error(result, text: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    error_lines = [line for line in output.splitlines() if line.startswith("ERROR: seamcheck:")]
    assert len(error_lines) == 1, output
    assert text in error_lines[0], error_lines[0]
    assert "[seamcheck] starting" not in output and "Traceback" not in output, output


def test_unknown_profile(tmp_path: Path) -> None:
    write_test(tmp_path)
    _assert_usage_error(run_inner(tmp_path, "--profile", "minikube"),
                        "unknown profile 'minikube'; choose one of local, kind, kind-gpu, cloud, host")


def test_unknown_profile_from_environment(tmp_path: Path) -> None:
    write_test(tmp_path)
    _assert_usage_error(run_inner(tmp_path, env=inner_env({"SEAMCHECK_PROFILE": "k3s"})), "unknown profile 'k3s'")


def test_unknown_matrix_row(tmp_path: Path) -> None:
    write_test(tmp_path)
    _assert_usage_error(run_inner(tmp_path, "--matrix-row", "kfp9.9"), "unknown matrix row 'kfp9.9'")


def test_malformed_matrix_file(tmp_path: Path) -> None:
    write_test(tmp_path)
    bad = tmp_path / "matrix.toml"
    bad.write_text('schema = 1\ndefault_row = "r"\n[rows.r]\nkind = "seed"\n')
    _assert_usage_error(run_inner(tmp_path, "--matrix-file", str(bad)), "`description` must be a non-empty string")


def test_taken_port(tmp_path: Path) -> None:
    write_test(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_inner(tmp_path, "--mlflow-port", str(port))
    _assert_usage_error(result, f"port {port} for mlflow on 127.0.0.1 is already in use; pass another port to "
                                "--mlflow-port")


@pytest.mark.parametrize("binary", ["prometheus", "haproxy"])
def test_missing_binary(tmp_path: Path, binary: str) -> None:
    write_test(tmp_path)
    # A PATH holding everything of the real one except the binary under test.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("prometheus", "haproxy"):
        if name != binary:
            real = __import__("shutil").which(name)
            if real:
                (bin_dir / name).symlink_to(real)
    env = inner_env({"PATH": f"{bin_dir}:{Path(sys.executable).parent}"})
    _assert_usage_error(run_inner(tmp_path, env=env), f"{binary} is not installed; install Debian's package")


def test_unit_tests_do_not_need_the_stack_binaries(tmp_path: Path) -> None:
    """Preflight runs only when a selected test uses the stack."""
    write_test(tmp_path, "def test_plain():\n    assert True\n")
    result = run_inner(tmp_path, env=inner_env({"PATH": str(Path(sys.executable).parent)}))
    assert result.returncode == 0, result.stdout + result.stderr
