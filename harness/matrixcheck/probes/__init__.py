"""Small probe scripts run inside a role environment's interpreter (PYTHONPATH = repo root):
``python -m harness.matrixcheck.probes.<name> ...``. Each prints one JSON object on its last stdout
line, prefixed ``SEAMCHECK_PROBE ``, and imports only what that role's environment has.

* client: the row's MLflow client (pipeline role, or the skew trainer): register, read, train-save.
* storage: KServe's Storage.download of several URIs (storage role).
* versions: installed distribution versions, stdlib only (any role, the serving one included).
"""

__all__ = ["RESULT_PREFIX"]

RESULT_PREFIX = "SEAMCHECK_PROBE "
