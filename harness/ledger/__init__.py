"""The run ledger and its reaper: nothing a session creates outlives it, however the session ends.

A pytest session's teardown runs on a pass, a failure, Ctrl-C and SIGTERM. A CI job timeout, the
OOM killer or ``kill -9`` skip it. So every resource the harness creates is written to a ledger
file *before* it exists, and a small separate process (the reaper) holds the read end of a pipe
whose only write end is in the session's process. When that process dies, however it dies, the
kernel closes the write end, the reaper's read returns at once, and it undoes what the ledger
still lists. The same idea as testcontainers' resource reaper (Ryuk: the session's connection to
it drops, it removes what the session labelled), with a pipe instead of a socket.

One module does one thing:

- ``records``: the ledger file's format (one JSON object a line) and replaying it into entries.
- ``undo``: how each kind of resource is removed: process groups (and every process carrying the
  run's token), mounts, cgroups, iptables rules, veth links, network namespaces, undo commands,
  folders. Shared by the reaper, by the owner's own close, and by the next run's cleanup.
- ``ledger``: ``Ledger``, the owner's side: intents, creations, releases, the token its
  children carry, and the lazily started reaper.
- ``reaper``: ``python -m harness.ledger.reaper``, the process that waits for the owner's death.
- ``others``: the other ledgers in the folder: a dead run's is cleaned (one line says so); a live
  run's claims (ports, names) are reported with its owner's pid so a new run can refuse in one line.

Blast radius: only what a ledger names is undone, and a process only when it is the very one
recorded (same pid and start time) or carries the run's 128-bit token in its environment.
"""
