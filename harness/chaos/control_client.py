"""How an experiment's actions and probes reach the stack's control (control.py).

Chaos Toolkit hands each activity the experiment's resolved `configuration`; ours names the
control URL and token (from SEAMCHECK_CONTROL_URL / SEAMCHECK_CONTROL_TOKEN, which the suite's
fixture and `seamcheck-stack` set).
"""
from __future__ import annotations

import os
from typing import Any

import requests

from harness.errors import StackError

__all__ = ["ControlUnavailable", "call"]

#: Long enough for the slowest operation (a pipeline run); each call says what it waited for.
CALL_TIMEOUT_S = 600


class ControlUnavailable(StackError):
    pass


def _endpoint(configuration: dict[str, Any] | None) -> tuple[str, str]:
    configuration = configuration or {}
    url = configuration.get("seamcheck_control_url") or os.environ.get("SEAMCHECK_CONTROL_URL")
    token = configuration.get("seamcheck_control_token") or os.environ.get("SEAMCHECK_CONTROL_TOKEN")
    if not url or not token:
        raise ControlUnavailable(
            "no seamcheck stack to act on: set SEAMCHECK_CONTROL_URL and SEAMCHECK_CONTROL_TOKEN "
            "(run `seamcheck-stack` and copy the lines it prints)")
    return url.rstrip("/"), token


def call(configuration: dict[str, Any] | None, operation: str, **kwargs: Any) -> Any:
    url, token = _endpoint(configuration)
    try:
        response = requests.post(f"{url}/v1/{operation}", json=kwargs, timeout=CALL_TIMEOUT_S,
                                 headers={"Authorization": f"Bearer {token}"})
    except requests.RequestException as exc:
        raise ControlUnavailable(f"the seamcheck stack's control at {url} did not answer {operation}: {exc}") from None
    body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
    if response.status_code != 200:
        raise RuntimeError(f"{operation} refused ({response.status_code}): {body.get('error') or response.text[:500]}")
    return body["result"]
