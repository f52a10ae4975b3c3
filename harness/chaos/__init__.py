"""The documented failure scenarios as Chaos Toolkit experiments.

* control.py   the fault and probe surface of a running local stack, served on loopback (token)
* client.py    how an experiment's actions and probes reach it (Chaos Toolkit configuration)
* actions.py   the experiments' actions (each a function of the harness)
* probes.py    the experiments' probes
* runner.py    run an experiment file through chaoslib, as `chaos run` does, and read its journal
* stack_cli.py `seamcheck-stack`: a local stack for running the experiments by hand
"""
