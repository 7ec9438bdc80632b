"""Running a backend in-process on pipes, for the runner tests.

:func:`exchange` starts ``run(infd=..., outfd=..., **kwargs)`` in a thread
(or ``asyncio.run`` of it for coroutine functions), writes the handshake and
the given lines, closes the input and returns every output line once the
backend returned.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from typing import Any, Callable, Dict, List, Sequence

TABLE_CONFIG = [b"config|smtpd-version|0.1.0", b"config|protocol|0.1", b"config|tablename|t", b"config|ready"]
FILTER_CONFIG = [b"config|smtpd-version|0.1.0", b"config|protocol|0.7", b"config|subsystem|smtp-in", b"config|ready"]
QUEUE_CONFIG = [b"config|smtpd-version|0.1.0", b"config|protocol|0.1", b"config|ready"]


def exchange(run: Callable[..., Any], lines: Sequence[bytes], timeout: float = 20.0, **kwargs: Any) -> List[bytes]:
    """Output lines of ``run`` fed with ``lines`` (handshake included)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    outcome: Dict[str, Any] = {}

    def target() -> None:
        try:
            if inspect.iscoroutinefunction(run):
                asyncio.run(run(infd=in_r, outfd=out_w, **kwargs))
            else:
                run(infd=in_r, outfd=out_w, **kwargs)
        except BaseException as e:  # reported to the test below
            outcome["error"] = e
        finally:
            os.close(out_w)
            os.close(in_r)

    def feed() -> None:
        view = memoryview(b"".join(line + b"\n" for line in lines))
        try:
            while view:
                view = view[os.write(in_w, view) :]
        except BrokenPipeError:
            pass
        finally:
            os.close(in_w)

    worker = threading.Thread(target=target)
    feeder = threading.Thread(target=feed)
    worker.start()
    feeder.start()
    chunks = []
    with os.fdopen(out_r, "rb") as f:
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    worker.join(timeout)
    feeder.join(timeout)
    assert not worker.is_alive(), "the backend did not return at end of input"
    if "error" in outcome:
        raise outcome["error"]
    data = b"".join(chunks)
    assert data == b"" or data.endswith(b"\n"), data[-100:]
    return data.split(b"\n")[:-1]


def answers(output: List[bytes]) -> List[bytes]:
    """The output without the handshake's registrations."""
    return [line for line in output if not line.startswith(b"register|")]
