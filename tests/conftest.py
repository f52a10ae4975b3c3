# tests/host_fixtures.py is registered once, here: a session fixture imported into several modules would be
# one fixture per module, and each would start its own kube-apiserver or host cluster.
pytest_plugins = ["pytester", "tests.host_fixtures"]
