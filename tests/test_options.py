"""One table of options: every input is validated at configure time with a one-line error naming
``name=value`` and the fix, the environment variable is derived from the flag, and the README's
options table is the table."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.options import OPTIONS, Option, options_markdown, parse_bool, parse_namespaces, parse_port
from tests.inner import REPO_ROOT, inner_env, run_inner, write_test


def _one_error(result, *texts: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    lines = [ln for ln in output.splitlines() if ln.startswith("ERROR: seamcheck:")]
    assert len(lines) == 1, output
    for text in texts:
        assert text in lines[0], lines[0]
    assert "Traceback" not in output and "[seamcheck] starting" not in output, output
    return lines[0]


def test_the_readme_options_table_is_the_option_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert options_markdown() in readme, "README's options table differs from harness/options.py: paste " \
        "`python -c 'from harness.options import options_markdown; print(options_markdown())'`"


def test_every_environment_variable_is_derived_from_its_flag() -> None:
    for opt in OPTIONS:
        assert opt.env == "SEAMCHECK_" + opt.flag[2:].replace("-", "_").upper()
        assert opt.dest == "seamcheck_" + opt.flag[2:].replace("-", "_")
    assert len({o.flag for o in OPTIONS}) == len(OPTIONS)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "Yes", "on", "ON"])
def test_yes_values(raw: str) -> None:
    assert parse_bool(raw, "SEAMCHECK_KEEP_STACK") is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "OFF"])
def test_no_values(raw: str) -> None:
    assert parse_bool(raw, "SEAMCHECK_KEEP_STACK") is False


def test_a_value_that_is_neither_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"SEAMCHECK_KEEP_STACK='maybe' is not a yes/no value; use one of "):
        parse_bool("maybe", "SEAMCHECK_KEEP_STACK")


def test_switches_read_their_environment_variable_as_yes_no() -> None:
    keep = next(o for o in OPTIONS if o.flag == "--keep-stack")
    assert keep.resolve(None, {"SEAMCHECK_KEEP_STACK": "True"}) is True  # silently "no" before
    assert keep.resolve(True, {}) is True and keep.resolve(None, {}) is False


def test_ports_and_namespaces() -> None:
    assert parse_port("0", "--mlflow-port") == 0 and parse_port("5000", "--mlflow-port") == 5000
    for bad in ("x", "70000", "-1"):
        with pytest.raises(ConfigError, match=r"--mlflow-port="):
            parse_port(bad, "--mlflow-port")
    assert parse_namespaces("kubeflow, model-serving", "--chaos-namespaces") == ("kubeflow", "model-serving")
    with pytest.raises(ConfigError, match=r"has an empty entry"):
        parse_namespaces("kubeflow,,x", "--chaos-namespaces")
    with pytest.raises(ConfigError, match=r"'Prod' is not a Kubernetes namespace name"):
        parse_namespaces("Prod", "--chaos-namespaces")


def test_a_closed_set_from_the_environment_is_checked_too() -> None:
    store = next(o for o in OPTIONS if o.flag == "--artifact-store")
    with pytest.raises(ConfigError, match=r"SEAMCHECK_ARTIFACT_STORE='gcs' is not one of s3, files"):
        store.resolve(None, {"SEAMCHECK_ARTIFACT_STORE": "gcs"})
    assert Option("--x", "d", "h").resolve(None, {"SEAMCHECK_X": ""}) == "d"  # empty: not set


# ------------------------------------------------------------------------------ at configure time
@pytest.mark.parametrize(("env", "texts"), [
    ({"SEAMCHECK_KEEP_STACK": "sure"}, ["SEAMCHECK_KEEP_STACK='sure' is not a yes/no value"]),
    ({"SEAMCHECK_MATRIX_GATE": "2"}, ["SEAMCHECK_MATRIX_GATE='2' is not a yes/no value"]),
    ({"SEAMCHECK_MLFLOW_PORT": "fivethousand"}, ["SEAMCHECK_MLFLOW_PORT='fivethousand' is not a port number"]),
    ({"SEAMCHECK_CHAOS_NAMESPACES": "kubeflow,"}, ["SEAMCHECK_CHAOS_NAMESPACES='kubeflow,' has an empty entry"]),
    ({"SEAMCHECK_NAMESPACE": "Model_Serving"}, ["SEAMCHECK_NAMESPACE='Model_Serving' is not a Kubernetes"]),
    ({"SEAMCHECK_ARTIFACT_STORE": "gcs"}, ["SEAMCHECK_ARTIFACT_STORE='gcs' is not one of s3, files"]),
], ids=["keep-stack", "matrix-gate", "port", "chaos-namespaces", "namespace", "artifact-store"])
def test_bad_environment_values_stop_the_run_in_one_line(tmp_path: Path, env: dict, texts: list[str]) -> None:
    write_test(tmp_path, "def test_plain():\n    pass\n")  # not even a stack test: validated at configure
    _one_error(run_inner(tmp_path, env=inner_env(env)), *texts)


def test_two_bad_values_are_named_in_the_same_line(tmp_path: Path) -> None:
    write_test(tmp_path, "def test_plain():\n    pass\n")
    _one_error(run_inner(tmp_path, "--s3-port", "99999", env=inner_env({"SEAMCHECK_KEEP_CLUSTER": "maybe"})),
               "--s3-port='99999' is out of range", "SEAMCHECK_KEEP_CLUSTER='maybe'")


@pytest.mark.parametrize(("spec", "text"), [
    ("nosuchpackage.module:judge", "no module named 'nosuchpackage'"),
    ("cmd:", "cmd:"),
    ("sequentail", "sequentail"),
], ids=["missing-module", "empty-command", "typo"])
def test_a_bad_judge_is_refused_at_configure_time(tmp_path: Path, spec: str, text: str) -> None:
    """Before: a bad --judge failed mid-scenario, after deploy and load."""
    write_test(tmp_path, "def test_plain():\n    pass\n")
    line = _one_error(run_inner(tmp_path, "--judge", spec), f"--judge={spec!r}")
    assert text in line, line


def test_a_judge_a_conftest_registers_is_known_by_name(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from harness.judges.sequential import SequentialJudge\n\n"
        "def pytest_seamcheck_judges(config):\n    return {'mine': SequentialJudge}\n")
    write_test(tmp_path, "def test_judges(run_settings):\n    assert run_settings.judges['user'] == 'mine'\n")
    result = run_inner(tmp_path, "--judge", "mine")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_profile_a_conftest_registers_is_chosen_by_name(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from harness.profiles.local import LocalProfile\n\n"
        "class Mine(LocalProfile):\n    name = 'mine'\n\n"
        "def pytest_seamcheck_profiles(config):\n    return {'mine': Mine}\n")
    write_test(tmp_path, "def test_profile(run_settings):\n    assert run_settings.profile_class().name == 'mine'\n")
    result = run_inner(tmp_path, "--profile", "mine")
    assert result.returncode == 0, result.stdout + result.stderr
    _one_error(run_inner(tmp_path, "--profile", "theirs"), "unknown profile 'theirs'; choose one of local, kind, "
                                                           "kind-gpu, cloud, host, mine")


def test_the_header_says_what_the_run_is_set_up_to_do(tmp_path: Path) -> None:
    write_test(tmp_path, "def test_plain():\n    pass\n")
    result = run_inner(tmp_path, "-v", "--run-id", "header-test")  # -q (run_inner's) hides the header
    header = [ln for ln in result.stdout.splitlines() if ln.startswith("seamcheck: profile")]
    assert len(header) == 1, result.stdout
    assert re.search(r"seamcheck: profile local, row kfp2\.3-mlflow2\.17-kserve0\.14, judges seed, sequential, "
                     r"flagger, argo, kayenta, "
                     r"reports .*header-test", header[0]), header
