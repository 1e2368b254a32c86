"""The driver lease: at most one live driver per study, held in the database itself.

A lease is one `armin_meta` row, key `driver_lease:<study name>`, whose value is JSON naming its
holder: a random `owner` token, `host`, `pid`, the process's start time (`pid_start`, to tell a
reused pid from the holder on Linux), `since` and `heartbeat` (UTC, ISO 8601). No table changes:
the row lives in the key/value table every armin file already has.

Every step is ONE SQL statement, so it is atomic (SQLite's single writer; a server's unique key), and each
checks its affected row count:
- take: `INSERT ... ON CONFLICT DO NOTHING` the row (one winner among drivers racing for a free lease);
- take over a stale lease: `UPDATE ... WHERE key = ? AND value = ?` with the exact value read
  (compare-and-swap: of two drivers taking over the same stale lease, one updates 1 row, the other 0);
- renew (the heartbeat) and release: the same compare-and-swap on our own last value, so a driver
  whose lease was taken over finds out (renew raises `LeaseLost`) and never deletes another's lease.

A lease is stale when its holder is on this host and its pid is gone (or is another process now),
or when it is on another host and its heartbeat is older than `STALE_AFTER_S` (a pid on another
machine cannot be checked). The heartbeat compares clocks of two hosts: they must agree to well
within `STALE_AFTER_S`.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import datetime

from sqlalchemy import text

from armin.errors import LeaseLost, StudyBusy
from armin.storage.db import Database
from armin.storage.models import utcnow

__all__ = ["HEARTBEAT_S", "STALE_AFTER_S", "DriverLease", "LeaseLost", "StudyBusy", "lease_key"]

HEARTBEAT_S = 5.0  # seconds between heartbeats of a running driver
STALE_AFTER_S = 60.0  # seconds without a heartbeat after which another host's lease is taken over


# One statement, on SQLite and PostgreSQL alike: the row if the key is free, nothing otherwise (rowcount 0).
_TAKE = text("INSERT INTO armin_meta (key, value) VALUES (:k, :v) ON CONFLICT (key) DO NOTHING")


def lease_key(study_name: str) -> str:
    return f"driver_lease:{study_name}"


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in parentheses may hold spaces


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return start is None or _process_start(pid) in (None, start)


class DriverLease:
    """A lease this process holds on one study; `take` it, `renew` it while running, `release` it."""

    def __init__(self, db: Database, study_name: str, value: dict) -> None:
        self.db, self.key, self.value = db, lease_key(study_name), value
        self._text = json.dumps(value, sort_keys=True)
        self._renewed = datetime.fromisoformat(value["heartbeat"])
        self.took_over: dict | None = None  # the stale holder this lease replaced, if any

    @classmethod
    def take(cls, db: Database, study_name: str, *, kind: str = "study") -> DriverLease:
        """Hold the lease of `study_name`, taking over a stale one; else raise `StudyBusy`."""
        pid = os.getpid()
        now = utcnow().isoformat()
        mine = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid),
                "since": now, "heartbeat": now}
        lease = cls(db, study_name, mine)
        with db.session() as s:
            got = s.execute(_TAKE,
                            {"k": lease.key, "v": lease._text}).rowcount
        if got == 1:
            return lease
        for _ in range(3):  # the holder may renew or release between our read and our update
            with db.session() as s:
                held = s.execute(text("SELECT value FROM armin_meta WHERE key = :k"), {"k": lease.key}).scalar()
            if held is None:
                with db.session() as s:
                    got = s.execute(_TAKE,
                                    {"k": lease.key, "v": lease._text}).rowcount
            else:
                holder = json.loads(held)
                if not is_stale(holder):
                    raise StudyBusy(describe_holder(kind, study_name, holder))
                with db.session() as s:
                    got = s.execute(text("UPDATE armin_meta SET value = :v WHERE key = :k AND value = :old"),
                                    {"k": lease.key, "v": lease._text, "old": held}).rowcount
                lease.took_over = holder
            if got == 1:
                return lease
        raise StudyBusy(f"{kind} '{study_name}': another driver is starting at the same moment; try again")

    def renew(self, *, every_s: float | None = None) -> None:
        """The heartbeat: rewrite our value with the time, at most every `every_s` (HEARTBEAT_S) seconds."""
        now = utcnow()
        if (now - self._renewed).total_seconds() < (HEARTBEAT_S if every_s is None else every_s):
            return
        value = {**self.value, "heartbeat": now.isoformat()}
        new = json.dumps(value, sort_keys=True)
        with self.db.session() as s:
            got = s.execute(text("UPDATE armin_meta SET value = :v WHERE key = :k AND value = :old"),
                            {"k": self.key, "v": new, "old": self._text}).rowcount
        if got != 1:
            raise LeaseLost(f"this driver's lease on {self.key.split(':', 1)[1]!r} was taken over by another driver "
                            f"(no heartbeat for over {STALE_AFTER_S:g} s); it stops without writing more")
        self.value, self._text, self._renewed = value, new, now

    def release(self) -> None:
        """Give the lease up (only if it is still ours)."""
        with self.db.session() as s:
            s.execute(text("DELETE FROM armin_meta WHERE key = :k AND value = :v"), {"k": self.key, "v": self._text})


def is_stale(holder: dict, *, now: datetime | None = None) -> bool:
    """Whether a lease's holder is gone: a dead pid on this host, or a heartbeat too old on another."""
    if holder.get("host") == socket.gethostname():
        return not _pid_alive(int(holder["pid"]), holder.get("pid_start"))
    age = ((now or utcnow()) - datetime.fromisoformat(holder["heartbeat"])).total_seconds()
    return age > STALE_AFTER_S


def describe_holder(kind: str, study_name: str, holder: dict) -> str:
    since = datetime.fromisoformat(holder["since"]).strftime("%Y-%m-%d %H:%M:%S UTC")
    age = (utcnow() - datetime.fromisoformat(holder["heartbeat"])).total_seconds()
    return (f"{kind} '{study_name}' is already being run by another driver (pid {holder['pid']} on host "
            f"{holder['host']}, since {since}, last heartbeat {max(age, 0):.0f} s ago); wait for it to finish, or "
            f"stop it (Ctrl-C or SIGTERM) and resume")
