"""Pre-upgrade version-matrix validation (`pytest -m matrix`, scenarios/matrix/).

* outcome: compatible / incompatible (with findings) / cannot-build, and NotEstablished (the harness's fault);
* checks: pure functions from observations to table cells;
* modelserver: one MLServer of a serving env, models loaded through its repository API;
* lab: environments, servers and probes per row, per serving env and per upgrade step;
* gate: which incompatibilities the matrix file accepts; table rendering is harness/report/matrix_table.py;
* probes/: scripts run inside role environments (client, storage, versions).
"""

__all__ = ["checks", "gate", "lab", "modelserver", "outcome"]
