"""Cluster support for the kind, kind-gpu and cloud profiles.

One module does one thing: ``tools`` (prerequisite binaries), ``commands`` (subprocesses with
timeouts, kubectl), ``spec`` (what a matrix row means on a cluster), ``render`` (templated
manifests in harness/cluster/manifests/), ``kind`` (cluster lifecycle), ``install`` (the stack, step by step,
each with a deadline), ``waits`` (polling with deadlines), ``kfp`` (the KFP REST API),
``task_probe`` (what each task reports in its log), ``tasks`` (a run's per-task results),
``isvc`` (rollback by storageUri swap), ``guard`` / ``faults`` (chaos, only where allowed),
``gpu`` (the fake GPU pool and placement checks), ``discover`` (versions on an existing cluster),
``portforward`` / ``ingress`` (reaching services from the harness), ``profile`` (the Profile
both cluster profiles share). Nothing here imports pytest.
"""
