"""The local profile's stand-ins: what runs on this machine in place of a cluster.

Real programs (each the upstream program, started as a local process):
* ``services/``: MLflow's tracking server (the row's), moto's S3-compatible server, Prometheus;
* ``haproxy``: the router (Debian's HAProxy), standing where Knative's ingress stands;
* ``replica``: one model-server replica (MLServer with the MLflow runtime, the row's);
* ``storage_initializer``: KServe's storage initializer (the row's ``kserve`` package).

The one emulation (KServe's and Knative's control planes cannot run here without a cluster):
* ``emulation``: KServe 0.14's Serverless reconcile, as pure functions (``reconcile``) driven by a
  loop over local processes; ``apiserver``: its Kubernetes-shaped REST API; ``activator``:
  Knative's activator for cold starts; ``patch``: merge and JSON patches as the API server applies
  them.

And the pipeline's network namespace (``netns``), where a NetworkPolicy's effect is reproduced.
"""
