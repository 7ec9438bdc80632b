"""Lookups per second and latency of the example table backend.

    python3 sdk-python/bench/table_lookups.py [--asyncio] [--count N]
        [--window W] [--latency-count M] [FILE]

Spawns ``python3 -m smtpd_sdk.examples.table_static FILE`` (the standard
fixture by default), performs the handshake, then:

1. throughput: pipelines ``--count`` lookups (100,000) keeping about
   ``--window`` (1,000) in flight, and reports lookups per second from the
   first request written to the last answer read;
2. latency: a fresh backend answers ``--latency-count`` lookups (5,000) one
   at a time; reports the median and the 99th percentile.

Every answer is checked to be a ``found`` for its request's id.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent.parent / "protocol-spec" / "vectors" / "fixtures" / "standard.table"
KEYS = [b"postmaster", b"abuse", b"alice", b"bob", b"example.org", b"192.0.2.1", b"pipe", b"utf8"]
HANDSHAKE = b"config|smtpd-version|0.1.0\nconfig|protocol|0.1\nconfig|tablename|standard\nconfig|ready\n"


def request(i: int) -> bytes:
    key = KEYS[i % len(KEYS)]
    return b"table|0.1|1731000001.000412|standard|lookup|alias|%08x|%s\n" % (i, key)


def start(args: argparse.Namespace) -> subprocess.Popen:
    argv = [sys.executable, "-m", "smtpd_sdk.examples.table_static", str(args.file)]
    if args.asyncio:
        argv.append("--asyncio")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(HANDSHAKE)
    pending = b""
    while b"register|ready\n" not in pending:
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            raise SystemExit("the backend ended during the handshake")
        pending += chunk
    return proc


def stop(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


def throughput(args: argparse.Namespace) -> float:
    proc = start(args)
    assert proc.stdin is not None and proc.stdout is not None
    requests = [request(i) for i in range(args.count)]
    state = {"received": 0, "found": 0}
    cond = threading.Condition()
    batch = max(1, min(100, args.window // 4))

    def read_answers() -> None:
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        tail = b""
        while state["received"] < args.count:
            chunk = os.read(fd, 1 << 18)
            if not chunk:
                break
            data = tail + chunk
            cut = data.rfind(b"\n") + 1
            complete, tail = data[:cut], data[cut:]
            n = complete.count(b"\n")
            found = complete.count(b"|found|")
            with cond:
                state["received"] += n
                state["found"] += found
                cond.notify()

    reader = threading.Thread(target=read_answers)
    began = time.perf_counter()
    reader.start()
    sent = 0
    fd = proc.stdin.fileno()
    while sent < args.count:
        with cond:
            while sent - state["received"] > args.window - batch:
                cond.wait()
        end = min(sent + batch, args.count)
        os.write(fd, b"".join(requests[sent:end]))
        sent = end
    reader.join()
    elapsed = time.perf_counter() - began
    stop(proc)
    if state["received"] != args.count or state["found"] != args.count:
        raise SystemExit(
            "expected %d found answers, got %d answers (%d found)" % (args.count, state["received"], state["found"])
        )
    return args.count / elapsed


def latency(args: argparse.Namespace) -> List[float]:
    proc = start(args)
    assert proc.stdin is not None and proc.stdout is not None
    infd, outfd = proc.stdin.fileno(), proc.stdout.fileno()
    samples: List[float] = []
    for i in range(args.latency_count):
        line = request(i)
        expected = b"lookup-result|%08x|found|" % i
        began = time.perf_counter_ns()
        os.write(infd, line)
        answer = b""
        while not answer.endswith(b"\n"):
            answer += os.read(outfd, 65536)
        samples.append((time.perf_counter_ns() - began) / 1000)
        if not answer.startswith(expected):
            raise SystemExit("unexpected answer %r" % answer[:100])
    stop(proc)
    samples.sort()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", default=FIXTURE, help="table(5) file (default: the standard fixture)")
    parser.add_argument("--asyncio", action="store_true", help="run the asyncio flavour of the example")
    parser.add_argument("--count", type=int, default=100_000, help="pipelined lookups")
    parser.add_argument("--window", type=int, default=1000, help="lookups in flight")
    parser.add_argument("--latency-count", type=int, default=5000, help="lookups one at a time")
    args = parser.parse_args()
    flavour = "asyncio" if args.asyncio else "plain"
    rate = throughput(args)
    print("table_static (%s): %d lookups, %d in flight: %.0f lookups/s" % (flavour, args.count, args.window, rate))
    samples = latency(args)
    p50 = samples[len(samples) // 2]
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print("table_static (%s): %d lookups one at a time: p50 %.0f us, p99 %.0f us" % (flavour, len(samples), p50, p99))


if __name__ == "__main__":
    main()
