"""Canary judgement against a live stack.

* ``observe``: read each revision's requests, errors and latency from Prometheus every interval
  (and the router's own counts where the profile has them) and feed every judge the same readings;
* ``plan``: which scenario runs on which service and what to prepare next (pure: unit-tested);
* ``scenarios``: the scenarios and the runner that plays the plan under Locust load.
"""
