"""One active writer per session: an expiring lease in Redis.

Key ``nxw:lease:{session}`` (string, JSON ``{"id", "host", "pid", "since"}``, with a
TTL): set with ``SET NX PX`` by the writer that takes the session, renewed by it
(compare-and-renew in one Lua script) every third of the TTL, deleted by it at a
clean stop. A second writer either refuses to start (:class:`LeaseHeldError`, naming
the holder) or stands by and takes the session over once the lease lapses (the
holder died, was killed, or lost its host).

A Redis that restarted empty loses the lease; its holder takes it back at the next
renewal (nobody else can have it then, or the renewal sees the new holder and the
lease is lost: :attr:`SessionLease.lost` is set and ``on_lost`` called).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import psutil

from ..errors import NexusWriterError
from . import protocol as P
from .walk import connection_lost

if TYPE_CHECKING:
    from .store import DataStore

logger = logging.getLogger(__name__)

#: Seconds a lease lives without renewal: a dead writer's session is free after this.
LEASE_TTL = 10.0

# KEYS[1] lease key; ARGV[1] the holder id that may be replaced, ARGV[2] our document,
# ARGV[3] ttl ms.  Sets our lease when there is none (Redis restarted empty) or when
# the holder is ARGV[1]: ourselves (a renewal) or a holder known dead (a take-over);
# returns 1, else the current document (somebody else holds it).
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current ~= false then
  local ok, doc = pcall(cjson.decode, current)
  if not (ok and type(doc) == 'table' and doc['id'] == ARGV[1]) then
    return current
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
# KEYS[1] lease key; ARGV[1] holder id. Deletes the lease only if it is ours.
_RELEASE = """
local current = redis.call('GET', KEYS[1])
if current == false then return 0 end
local ok, doc = pcall(cjson.decode, current)
if ok and type(doc) == 'table' and doc['id'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_key(session: str) -> str:
    return f"{P.PREFIX}:lease:{session}"


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a session's lease."""

    id: str
    host: str
    pid: int
    since: float
    #: The holder process's start time (tells a reused pid from the holder).
    started: float = 0.0

    @classmethod
    def decode(cls, raw: bytes | str) -> "LeaseHolder":
        try:
            doc = json.loads(raw)
            return cls(str(doc["id"]), str(doc["host"]), int(doc["pid"]), float(doc["since"]),
                       float(doc.get("started", 0.0)))
        except (ValueError, KeyError, TypeError):
            return cls("?", "?", 0, 0.0)

    def dead_here(self) -> bool:
        """Whether the holder is a process of this host that no longer runs: its lease
        need not be waited out (a writer restarted after ``kill -9`` goes on at once)."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            process = psutil.Process(self.pid)
            return (process.status() == psutil.STATUS_ZOMBIE
                    or abs(process.create_time() - self.started) > 0.01)
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            return False

    def __str__(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"host {self.host}, pid {self.pid}, since {since}"


class LeaseHeldError(NexusWriterError, RuntimeError):
    """Another writer holds the session's lease."""

    def __init__(self, session: str, holder: LeaseHolder):
        self.session = session
        self.holder = holder
        super().__init__(
            f"session {session!r} is written by another writer ({holder}); two writers "
            "on one session would write every scan twice into the same files. Stop that "
            "writer, or start this one with --standby to take over when it stops")


def lease_holder(store: "DataStore", session: str) -> LeaseHolder | None:
    """The current holder of ``session``'s lease, or None."""
    with connection_lost(f"session {session!r} lease"):
        raw = store.redis.get(lease_key(session))
    return None if raw is None else LeaseHolder.decode(raw)


class SessionLease:
    """The lease of one writer on one session, renewed in a thread once acquired."""

    def __init__(self, store: "DataStore", session: str, ttl: float = LEASE_TTL,
                 on_lost: Callable[[LeaseHolder | None], None] | None = None):
        self.store = store
        self.session = session
        self.ttl = ttl
        self.on_lost = on_lost
        self.me = LeaseHolder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), time.time(),
                              psutil.Process().create_time())
        self.held = False
        #: Set when another writer took the lease while this one held it.
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._claim = store.redis.register_script(_CLAIM)
        self._release = store.redis.register_script(_RELEASE)

    @property
    def key(self) -> str:
        return lease_key(self.session)

    def _document(self) -> str:
        return json.dumps({"id": self.me.id, "host": self.me.host, "pid": self.me.pid,
                           "since": self.me.since, "started": self.me.started})

    def try_acquire(self) -> LeaseHolder | None:
        """Take the lease if it is free; returns None on success, else its holder."""
        ms = int(self.ttl * 1000)
        with connection_lost(f"session {self.session!r} lease"):
            while True:
                if self.store.redis.set(self.key, self._document(), nx=True, px=ms):
                    self._acquired()
                    return None
                raw = self.store.redis.get(self.key)
                if raw is not None:  # else it lapsed in between: try again
                    break
            holder = LeaseHolder.decode(raw)
            if holder.id != self.me.id and holder.dead_here():
                if self._claim(keys=[self.key], args=[holder.id, self._document(), ms]) == 1:
                    logger.warning("session %s: the writer that held it (%s) is dead: "
                                   "taking over", self.session, holder)
                    holder = self.me
        if holder.id == self.me.id:
            self._acquired()
            return None
        return holder

    def acquire(self) -> None:
        """Take the lease or raise :class:`LeaseHeldError` naming its holder."""
        holder = self.try_acquire()
        if holder is not None:
            raise LeaseHeldError(self.session, holder)

    def wait_acquire(self, stop: threading.Event, poll: float | None = None,
                     on_wait: Callable[[LeaseHolder], None] | None = None) -> bool:
        """Stand by until the lease is free, then take it (True); False if ``stop``.

        ``on_wait(holder)`` is called when the holder changes (to log it once).
        Redis being away is waited out like a held lease.
        """
        poll = poll if poll is not None else self.ttl / 5
        last: LeaseHolder | None = None
        while not stop.is_set():
            try:
                holder = self.try_acquire()
            except ConnectionError as e:
                logger.warning("session %s: standing by, Redis unreachable: %s",
                               self.session, e)
                holder = last
            if holder is None and self.held:
                return True
            if holder is not None and holder != last and on_wait is not None:
                on_wait(holder)
            last = holder
            stop.wait(poll)
        return False

    def _acquired(self) -> None:
        self.held = True
        self.lost.clear()
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name=f"lease:{self.session}")
            self._thread.start()

    def renew(self) -> bool:
        """Renew now; False (and :attr:`lost` set) if another writer holds the lease."""
        with connection_lost(f"session {self.session!r} lease"):
            result: Any = self._claim(keys=[self.key], args=[
                self.me.id, self._document(), int(self.ttl * 1000)])
        if result == 1:
            return True
        holder = LeaseHolder.decode(result)
        self.held = False
        self.lost.set()
        logger.error("session %s: lease lost to another writer (%s): this writer stops "
                     "taking scans", self.session, holder)
        if self.on_lost is not None:
            self.on_lost(holder)
        return False

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.renew():
                    return
            except Exception as e:  # noqa: BLE001 - Redis away: nobody can take it meanwhile
                logger.warning("session %s: lease not renewed: %s", self.session, e)

    def release(self) -> None:
        """Stop renewing and give the lease back (if still ours)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        if self.held:
            try:
                self._release(keys=[self.key], args=[self.me.id])
            except Exception as e:  # noqa: BLE001 - expires by itself
                logger.debug("session %s: lease not released: %s", self.session, e)
        self.held = False
