"""Open Inference Protocol (V2) requests and responses, as KServe's MLflow runtime takes them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

from harness.errors import StackError

if TYPE_CHECKING:  # pandas takes 0.4 s to import; here it is only a type
    import pandas as pd

__all__ = ["V2Error", "infer", "v2_outputs", "v2_request"]

_DATATYPES = {"float64": "FP64", "float32": "FP32", "int64": "INT64", "int32": "INT32", "bool": "BOOL",
              "object": "BYTES"}


class V2Error(StackError):
    def __init__(self, status: int, body: str) -> None:
        self.status, self.body = status, body
        super().__init__(f"V2 inference answered HTTP {status}: {body[:1000]}")


def v2_request(frame: pd.DataFrame, *, content_type: str | None = "pd") -> dict[str, Any]:
    """One named input per column, as KServe's own MLflow e2e payload does. `content_type: pd`
    makes MLServer decode the inputs as a DataFrame, which models without a signature need."""
    body: dict[str, Any] = {
        "inputs": [
            {"name": str(col), "shape": [len(frame)], "datatype": _DATATYPES.get(str(frame[col].dtype), "FP64"),
             "data": frame[col].tolist()}
            for col in frame.columns
        ]
    }
    if content_type:
        body["parameters"] = {"content_type": content_type}
    return body


def v2_outputs(response: dict[str, Any]) -> list[Any]:
    outputs = response.get("outputs") or []
    if not outputs:
        raise ValueError(f"V2 response has no outputs: {response}")
    return list(outputs[0]["data"])


def infer(base_url: str, model: str, frame: pd.DataFrame, *, timeout: float = 30.0,
          content_type: str | None = "pd", headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = requests.post(f"{base_url}/v2/models/{model}/infer", json=v2_request(frame, content_type=content_type),
                         timeout=timeout, headers=headers)
    if resp.status_code != 200:
        raise V2Error(resp.status_code, resp.text)
    return resp.json()
