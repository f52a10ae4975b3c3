"""The ledger file: one JSON object a line, appended with one write(2) each, never rewritten.

    {"op": "open", "run_id": ..., "token": ..., "owner_pid": ..., "owner_started": ..., ...}
    {"op": "intend", "id": 3, "kind": "netns", "what": {"name": "seamcheck-12"}}
    {"op": "created", "id": 3, "what": {...}}        (facts known only afterwards: a pid)
    {"op": "released", "id": 3}                      (teardown removed it)
    {"op": "kept", "id": 3}                          (the user asked to keep it: never undone)
    {"op": "close"}                                  (the owner ended normally)

An intent comes first: a crash between "created" and "recorded" leaves an intent whose resource
may or may not exist, and every undo treats "not there" as done.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "Entry", "LedgerState", "dumps", "read_state"]

#: Every kind of resource a ledger can hold, in the order the sweep undoes them: processes first
#: (they hold ports, mounts and namespaces), folders last (a process may still write into one).
KINDS = ("process", "command", "mount", "cgroup", "iptables", "link", "netns", "dir", "claim")


@dataclass
class Entry:
    id: int
    kind: str
    what: dict[str, Any]
    state: str = "intended"  # intended | created | released | kept

    @property
    def pending(self) -> bool:
        """Still to be undone if the owner dies now."""
        return self.state in ("intended", "created")

    def describe(self) -> str:
        what = self.what
        label = what.get("name") or what.get("path") or what.get("port") or what.get("argv") or ""
        return f"{self.kind} {label}".strip()


@dataclass
class LedgerState:
    header: dict[str, Any] = field(default_factory=dict)
    entries: dict[int, Entry] = field(default_factory=dict)
    closed: bool = False

    def pending(self, kinds: Iterable[str] = KINDS) -> list[Entry]:
        wanted = set(kinds)
        return [e for e in self.entries.values() if e.pending and e.kind in wanted]

    @property
    def token(self) -> str:
        return str(self.header.get("token", ""))


def dumps(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode()


def read_state(path: Path) -> LedgerState:
    """Replay a ledger file. A torn last line (the owner died inside a write) is ignored: the
    write(2) of a record is atomic on a local file, so only the very last line can be short."""
    state = LedgerState()
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return state
    for raw in lines:
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        op = record.get("op")
        if op == "open":
            state.header = record
        elif op == "intend":
            state.entries[record["id"]] = Entry(record["id"], record["kind"], dict(record.get("what") or {}))
        elif op in ("created", "released", "kept") and record.get("id") in state.entries:
            entry = state.entries[record["id"]]
            if op == "created":
                entry.what.update(record.get("what") or {})
                if entry.state == "intended":
                    entry.state = "created"
            else:
                entry.state = op
        elif op == "close":
            state.closed = True
    return state
