"""Leases: which writers of a destination are alive, and one pull at a time per watermark key.

Every pull (every ``Store``) holds a lease, ``<destination>/_leases/<token>.json``, from before
its first temporary file until after its last. Its temporary files carry the same token
(``.gini-tmp-<token>-...``). That gives the clean-up rule for a destination that several pulls
write side by side: **a temporary file is removed only by its own writer, or once its writer is
provably dead** (its lease is gone, or says so). The rule needs no lock, because a writer's lease
exists before any of its temporary files can be seen.

A writer is dead when:
- its lease is gone (it ended, or an older version wrote the file without one);
- it ran on this machine (same host name, boot id and pid namespace) and its process is gone,
  or the pid is now another process (its start time differs): exact, so a new run cleans up at
  once after a ``kill -9``;
- it ran elsewhere and its lease has expired: a live writer renews it every ``TTL / 4``.

**One pull per watermark key.** Two pulls with the same watermark key (catch-up runs of one
task, a manual run beside the schedule) would both plan from the same watermark and then save
over each other's state. They take turns instead, by Lamport's bakery algorithm over the lease
files (each file is written whole, by rename, and read whole): a pull takes a ticket one higher
than any it sees, and waits while a live pull of the key is still choosing its ticket or holds a
smaller one. The later pull then plans from the watermark the earlier one left, so the catch-up
pulls each document once. Waiting ends with the task: ``execution_timeout`` and ``on_kill``
stop it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from airflow_provider_gini.client.errors import GiniCancelled

log = logging.getLogger("airflow_provider_gini.pull")

LEASES = "_leases"
TTL = 600.0  # seconds a lease outlives its writer's last renewal on another machine
WAIT_POLL = 2.0


def _machine() -> str | None:
    """This boot of this machine's kernel and this process's PID namespace: two processes
    with the same value see the same pids. None where /proc cannot tell (not Linux)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        # Containers that share the host's name (host networking) still have pid namespaces of
        # their own, where another container's pid means nothing.
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot} {namespace}" if boot else None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), which
    tells a live process from a new one that got the same pid; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


class LeaseFiles(Protocol):
    """Where leases are kept (the Store): one file per token, read and written whole."""

    def read_lease(self, token: str) -> bytes | None: ...
    def write_lease(self, token: str, data: bytes, first: bool) -> None: ...
    def remove_lease(self, token: str) -> None: ...
    def lease_tokens(self) -> list[str]: ...


@dataclass(frozen=True)
class LeaseBody:
    token: str
    host: str
    boot: str | None
    pid: int
    started: str | None
    expires: float
    key: str | None = None  # the watermark key, for the turns; None: no state to share
    choosing: bool = False
    ticket: int = 0
    holder: str = ""  # "<run id> <task>", to name who is waited for

    @classmethod
    def parse(cls, raw: bytes) -> LeaseBody | None:
        try:
            body = json.loads(raw)
            return cls(**{name: body[name] for name in cls.__dataclass_fields__ if name in body})
        except (ValueError, TypeError, KeyError):
            return None


class Liveness:
    """Whether the writer of a token is alive, as this machine can prove it."""

    def __init__(self, files: LeaseFiles) -> None:
        self.read = files.read_lease  # token -> the lease file's bytes, None when there is none
        self.host = socket.gethostname()
        self.boot = _machine()

    def lease(self, token: str) -> LeaseBody | None:
        raw = self.read(token)
        return None if raw is None else LeaseBody.parse(raw)

    def alive(self, body: LeaseBody | None) -> bool:
        if body is None:
            return False
        if self.boot is not None and body.host == self.host and body.boot == self.boot:
            started = _start_time(body.pid)
            return started is not None and (body.started is None or started == body.started)
        return body.expires > time.time()

    def dead(self, token: str) -> bool:
        raw = self.read(token)
        if raw is None:
            return True
        body = LeaseBody.parse(raw)
        # Unreadable: a first write still under way (the first one cannot go through a temporary
        # file, which could be swept before the lease exists). Never proof of death.
        return body is not None and not self.alive(body)


class Lease:
    """This writer's lease: written before its first temporary file, renewed while it works,
    removed after its last write."""

    def __init__(
        self, token: str, files: LeaseFiles, liveness: Liveness, key: str | None, holder: str
    ) -> None:
        self.token = token
        self.files = files
        self.liveness = liveness
        pid = os.getpid()
        host, boot = liveness.host, liveness.boot
        self.body = LeaseBody(token, host, boot, pid, _start_time(pid), time.time() + TTL, key, holder=holder)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    def _save(self, first: bool = False, **changes: Any) -> None:
        with self._lock:
            self.body = replace(self.body, **changes)
            # The first write goes straight to the lease's name (LeaseFiles.write_lease).
            self.files.write_lease(self.token, json.dumps(asdict(self.body)).encode(), first)

    def take(self) -> None:
        self._save(first=True)
        self._renewer = threading.Thread(target=self._renew, name="gini-lease", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(TTL / 4):
            try:
                self._save(expires=time.time() + TTL)
            except OSError as exc:  # the next renewal may succeed; the lease still has 3/4 of TTL
                log.warning("Could not renew the pull's lease: %s", exc)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        self.files.remove_lease(self.token)

    def others(self) -> list[LeaseBody]:
        """The live leases of other pulls with this lease's key."""
        found = []
        for token in self.files.lease_tokens():
            if token == self.token:
                continue
            body = self.liveness.lease(token)
            if body is not None and body.key == self.body.key and self.liveness.alive(body):
                found.append(body)
        return found

    def wait_turn(self, stopping: threading.Event, waiting: Callable[[LeaseBody], None]) -> None:
        """Wait until no other live pull of this key is before this one (the bakery algorithm).
        ``waiting`` is told, once per pull waited for, whom this pull waits for."""
        if self.body.key is None:
            return
        self._save(choosing=True)
        self._save(choosing=False, ticket=1 + max((b.ticket for b in self.others()), default=0))
        told: set[str] = set()
        while True:
            mine = (self.body.ticket, self.token)
            # Ticket 0: a pull that has not begun choosing yet, which takes a later ticket.
            ahead = [b for b in self.others() if b.choosing or (b.ticket > 0 and (b.ticket, b.token) < mine)]
            if not ahead:
                return
            for body in ahead:
                if body.token not in told and not body.choosing:
                    told.add(body.token)
                    waiting(body)
            if stopping.wait(WAIT_POLL * random.uniform(0.5, 1.0)):
                raise GiniCancelled("The pull was stopped while it waited for its turn")
