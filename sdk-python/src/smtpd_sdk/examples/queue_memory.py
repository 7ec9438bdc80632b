"""A queue backend keeping everything in memory (nothing survives a restart).

    python3 -m smtpd_sdk.examples.queue_memory [--asyncio]

It starts empty, and follows protocol-spec/SPEC.md section 4: a message is
written in chunks, each starting where the stored data ends, then committed
once (its length must be the announced size); only committed messages can
be read, and reading at or past the end gives empty data. Envelopes belong to a message
and are visible (loaded, updated, walked) once it is committed; walking
returns the envelope with the smallest id above a given one, then ``done``.
Deleting a message deletes its envelopes, and a corrupt message is moved
aside with them; deleting the last envelope of a committed message deletes
the message.

It registers ``lease`` (SPEC.md 4.12), as a store shared by several daemons
would: an envelope claimed by one instance is ``busy`` for the others until
the lease expires or is released, and ``envelope-walk-free`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

from smtpd_sdk import BackendError, aio, queue
from smtpd_sdk.protocol.queue import LEASE_CAPABILITY


class Message:
    """A message's content and whether it was committed."""

    __slots__ = ("data", "committed")

    def __init__(self) -> None:
        self.data = bytearray()
        self.committed = False


class MemoryQueue:
    """The store and the queue operations."""

    def __init__(self) -> None:
        self.messages: Dict[int, Message] = {}
        self.envelopes: Dict[int, bytes] = {}
        self.corrupt: Dict[int, Tuple[Message, Dict[int, bytes]]] = {}
        self._sorted: Optional[List[int]] = None
        # evpid -> (instance, expiry on the monotonic clock)
        self.leases: Dict[int, Tuple[str, float]] = {}

    def _message(self, msgid: int) -> Message:
        message = self.messages.get(msgid)
        if message is None:
            raise BackendError("unknown message %08x" % msgid)
        return message

    def _new_id(self, taken: Dict[int, object], prefix: int = 0) -> int:
        while True:
            low = random.getrandbits(32)
            candidate = prefix << 32 | low
            if low and candidate not in taken and (prefix or candidate not in self.corrupt):
                return candidate

    def message_create(self) -> int:
        msgid = self._new_id(self.messages)  # type: ignore[arg-type]
        self.messages[msgid] = Message()
        return msgid

    def _uncommitted(self, msgid: int) -> Message:
        message = self._message(msgid)
        if message.committed:
            raise BackendError("message %08x is already committed" % msgid)
        return message

    def message_write(self, msgid: int, offset: int, data: bytes) -> None:
        message = self._uncommitted(msgid)
        if offset != len(message.data):
            raise BackendError("write at %d, but %d bytes are stored" % (offset, len(message.data)))
        message.data += data

    def message_commit(self, msgid: int, size: int) -> None:
        message = self._uncommitted(msgid)
        if len(message.data) != size:
            raise BackendError("size mismatch: %d bytes written, %d announced" % (len(message.data), size))
        message.committed = True
        self._sorted = None

    def message_read(self, msgid: int, offset: int, length: int) -> Optional[bytes]:
        message = self.messages.get(msgid)
        if message is None or not message.committed:
            return None
        return bytes(message.data[offset : offset + length])

    def _take_envelopes(self, msgid: int) -> Dict[int, bytes]:
        taken = {e: d for e, d in self.envelopes.items() if e >> 32 == msgid}
        for evpid in taken:
            del self.envelopes[evpid]
        self._sorted = None
        return taken

    def message_delete(self, msgid: int) -> None:
        self.messages.pop(msgid, None)
        self._take_envelopes(msgid)

    def message_corrupt(self, msgid: int) -> bool:
        message = self.messages.pop(msgid, None)
        if message is None:
            return False
        self.corrupt[msgid] = (message, self._take_envelopes(msgid))
        return True

    def _visible(self, evpid: int) -> bool:
        message = self.messages.get(evpid >> 32)
        return evpid in self.envelopes and message is not None and message.committed

    def envelope_create(self, msgid: int, data: bytes) -> int:
        if not data:
            raise BackendError("an envelope cannot be empty")
        self._message(msgid)
        evpid = self._new_id(self.envelopes, prefix=msgid)  # type: ignore[arg-type]
        self.envelopes[evpid] = bytes(data)
        self._sorted = None
        return evpid

    def envelope_update(self, evpid: int, data: bytes) -> bool:
        if not data:
            raise BackendError("an envelope cannot be empty")
        if not self._visible(evpid):
            return False
        self.envelopes[evpid] = bytes(data)
        return True

    def envelope_load(self, evpid: int) -> Optional[bytes]:
        return self.envelopes[evpid] if self._visible(evpid) else None

    def envelope_delete(self, evpid: int) -> None:
        self.leases.pop(evpid, None)
        if self.envelopes.pop(evpid, None) is not None:
            self._sorted = None
            msgid = evpid >> 32
            message = self.messages.get(msgid)
            if message is not None and message.committed and not any(e >> 32 == msgid for e in self.envelopes):
                del self.messages[msgid]

    def _held_by_other(self, evpid: int, instance: str) -> bool:
        lease = self.leases.get(evpid)
        return lease is not None and lease[0] != instance and lease[1] > time.monotonic()

    def envelope_claim(self, evpid: int, instance: str, seconds: int) -> str:
        if not self._visible(evpid):
            return "not-found"
        if self._held_by_other(evpid, instance):
            return "busy"
        self.leases[evpid] = (instance, time.monotonic() + seconds)
        return "ok"

    def envelope_release(self, evpid: int, instance: str) -> None:
        lease = self.leases.get(evpid)
        if lease is not None and lease[0] == instance:
            del self.leases[evpid]

    def envelope_walk_free(self, after: int, instance: str) -> Optional[Tuple[int, bytes]]:
        while True:
            found = self.envelope_walk(after)
            if found is None or not self._held_by_other(found[0], instance):
                return found
            after = found[0]

    def envelope_walk(self, after: int) -> Optional[Tuple[int, bytes]]:
        if self._sorted is None:
            self._sorted = sorted(
                e for e in self.envelopes if self.messages.get(e >> 32, Message()).committed
            )
        i = bisect.bisect_right(self._sorted, after)
        while i < len(self._sorted):
            evpid = self._sorted[i]
            data = self.envelopes.get(evpid)
            if data is not None:
                return evpid, data
            i += 1
        return None


class AsyncMemoryQueue:
    """The same operations as coroutines, for :func:`smtpd_sdk.aio.run_queue`."""

    def __init__(self, inner: MemoryQueue) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.inner, name)

        async def call(*args: Any) -> Any:
            return method(*args)

        return call


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parses the arguments and serves the queue until stdin ends."""
    parser = argparse.ArgumentParser(prog="queue_memory", description="An in-memory queue backend.")
    parser.add_argument("--asyncio", action="store_true", help="run the asyncio flavour")
    args = parser.parse_args(argv)
    store = MemoryQueue()
    if args.asyncio:
        asyncio.run(aio.run_queue(AsyncMemoryQueue(store), capabilities=[LEASE_CAPABILITY]))
    else:
        queue.run(store, capabilities=[LEASE_CAPABILITY])
    return 0


if __name__ == "__main__":
    sys.exit(main())
