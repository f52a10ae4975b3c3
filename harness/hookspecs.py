"""seamcheck's hook specifications: where a user's plugin or conftest extends seamcheck.

Registered by the plugin with ``pluginmanager.add_hookspecs``. Implement them in a ``conftest.py``
or a plugin module; every implementation's result is merged (later plugins override a name).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["pytest_seamcheck_judges", "pytest_seamcheck_profiles"]

hookspec = pytest.hookspec


@hookspec
def pytest_seamcheck_profiles(config: pytest.Config) -> dict[str, type[Any]]:
    """Name more ways to stand the stack up, for ``--profile``.

    :param config: the pytest config.
    :return: ``{name: ProfileClass}``. A class is a ``harness.profiles.base.Profile`` with a
        ``preflight(config: StackConfig, row: Row)`` classmethod (checks, before any process
        starts, what the profile needs: raise ``harness.errors.ProfileError`` with the fix) and
        the constructor ``(config: StackConfig, row: Row, *, progress=None)``.

    Use in conftest plugins::

        def pytest_seamcheck_profiles(config):
            return {"my-cluster": MyClusterProfile}

    seamcheck's own plugin returns local, kind, kind-gpu and cloud. A profile named on the command
    line that no implementation returns is a one-line usage error listing the known ones.
    """


@hookspec
def pytest_seamcheck_judges(config: pytest.Config) -> dict[str, Callable[[Any], Any]]:
    """Name more canary judges, for ``--judge <name>`` and the judge-conformance table.

    :param config: the pytest config.
    :return: ``{name: factory}``; ``factory(JudgeConfig)`` returns a judge (an object with
        ``name``, ``reset()``, ``observe(Reading) -> Verdict`` and ``finish(Reading | None) ->
        Verdict``; see ``harness.judges.base``). Its failures never promote: it is wrapped like
        a ``--judge module:callable`` judge.

    Use in conftest plugins::

        def pytest_seamcheck_judges(config):
            return {"mine": lambda cfg: MyJudge(cfg)}

    Every name is loaded once at configure time, so a broken factory fails there, in one line.
    """
