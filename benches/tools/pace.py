#!/usr/bin/env python3
"""Paced FastAGI calls, one at a time, the block written line by line as Asterisk 20 does.

    pace.py PORT RATE COUNT [PID]

With PACE_LINE_GAP_US=N in the environment, waits N µs between the lines of a block, so
that each line reaches the server on its own (one wake-up per line, as when Asterisk's
writes arrive in separate segments).

Plays Asterisk against 127.0.0.1:PORT: COUNT calls at RATE calls per second, each a fresh
connection sending the recorded pjsip block (`sessions/pjsip-ipv4.header.raw`, from the
fixtures directory `IPCOUNTRY_FIXTURES`, default ../shared/fixtures/asterisk-agi) one
`agi_*` line per write, answering every command (`200 result=0` to EXEC, `200 result=1`
otherwise) until the server closes. Prints the latency p50/p99 (connect to close) and, with
PID, the CPU the process spent per call over the window (its idle share included), from
/proc/PID/stat. A second, independent client beside the shipped load generator
(`cargo bench --bench agi_load`), used for the callgrind counts in BENCHMARKS.md.
"""
import os
import socket
import sys
import time

FIXTURES = os.environ.get(
    "IPCOUNTRY_FIXTURES",
    os.path.join(os.path.dirname(__file__), "../../../shared/fixtures/asterisk-agi"),
)
SOURCES = ["8.8.4.4", "81.2.69.160", "24.48.0.1", "2.16.6.1", "41.0.0.1", "203.0.113.9"]


def block(n):
    path = os.path.join(FIXTURES, "sessions/pjsip-ipv4.header.raw")
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    host = SOURCES[n % len(SOURCES)].encode()
    out = []
    for line in lines[:-1]:
        if line.startswith(b"agi_arg_1: "):
            line = b"agi_arg_1: " + host + b":5060"
        elif line.startswith(b"agi_arg_2: "):
            line = b"agi_arg_2: Bob <sip:bob@" + host + b">;tag=%dSIPpTag001" % n
        elif line.startswith(b"agi_uniqueid: "):
            line = b"agi_uniqueid: 1795611310.%d" % n
        out.append(line + b"\n")
    return out


# The CPU of every thread seen so far, by thread id, at its last reading: /proc/<pid>/task
# lists the living threads only, and summed over it the process's CPU drops when a thread
# exits (tokio's blocking-pool thread after 10 s idle, with its start-up work).
SEEN = {}


def cpu_ns(pid):
    if pid is None:
        return 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                SEEN[(pid, tid)] = int(f.read().split()[0])
        except OSError:
            pass
    return sum(ns for (p, _), ns in SEEN.items() if p == pid)


GAP = int(os.environ.get("PACE_LINE_GAP_US", "0")) / 1e6


def call(port, lines):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # The lines end with the block's empty line: nothing more is sent until a command comes
    # (an extra empty line would be read as the reply to the first one).
    for line in lines:
        s.sendall(line)
        if GAP:
            time.sleep(GAP)
    pending = b""
    while True:
        data = s.recv(4096)
        if not data:
            break
        pending += data
        while b"\n" in pending:
            cmd, pending = pending.split(b"\n", 1)
            s.sendall(b"200 result=0\n" if cmd.startswith(b"EXEC") else b"200 result=1\n")
    s.close()


def main():
    port, rate, count = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    pid = int(sys.argv[4]) if len(sys.argv) > 4 else None
    blocks = [block(n) for n in range(64)]
    lat = []
    start = time.monotonic()
    cpu0 = cpu_ns(pid)
    for n in range(count):
        due = start + n / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        t = time.monotonic()
        call(port, blocks[n % len(blocks)])
        lat.append((time.monotonic() - t) * 1e6)
    cpu = cpu_ns(pid) - cpu0
    lat.sort()
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, len(lat) * 99 // 100)]
    msg = f"calls {count} p50 {p50:.0f} us p99 {p99:.0f} us"
    if pid is not None:
        msg += f" cpu/call {cpu / count / 1e3:.1f} us"
    print(msg)


if __name__ == "__main__":
    main()
