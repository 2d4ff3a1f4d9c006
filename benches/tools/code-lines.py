#!/usr/bin/env python3
"""The code a thread ran, in 64-byte lines, from a callgrind file written with --dump-instr=yes.

    code-lines.py CALLGRIND_FILE CALLS [TOP]

Prints how many distinct lines of code (and 4 KiB pages) the thread executed, how many of
them it ran in nearly every call (at least 0.9 * CALLS instructions on the line over the
window), and the TOP functions (default 20) owning most of those lines. This machine's L1i
holds 512 lines (32 KiB); BENCHMARKS.md, "Session of 2026-12-04", has the counts of the
floor and of `serve`. `CALLGRIND_INSTR=1 benches/tools/callgrind-call.sh ...` records the file
and runs this on its busiest thread.
"""
import collections
import re
import sys


def main():
    path, calls = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    names, objects = {}, {}
    fn, obj, addr = "?", "?", 0
    cost = collections.Counter()
    owner = {}
    call_line = False  # the line after `calls=` holds a call's inclusive cost, not its own
    for raw in open(path, errors="replace"):
        for prefix, table in (("fn=", names), ("cfn=", names), ("ob=", objects), ("cob=", objects)):
            if raw.startswith(prefix):
                m = re.match(r"\w+=\((\d+)\)(?: (.*))?", raw.strip())
                if m and m.group(2):
                    table[m.group(1)] = m.group(2)
                if m and prefix == "fn=":
                    fn = names.get(m.group(1), m.group(1))
                if m and prefix == "ob=":
                    obj = objects.get(m.group(1), m.group(1))
                break
        else:
            if raw.startswith("calls="):
                call_line = True
                continue
            if raw[:1] and raw[0] in "0123456789+-*":
                fields = raw.split()
                a = fields[0]
                if a.startswith("0x"):
                    addr = int(a, 16)
                elif a[0] == "+":
                    addr += int(a[1:], 0)
                elif a[0] == "-":
                    addr -= int(a[1:], 0)
                key = (obj, addr >> 6)
                cost[key] += 0 if call_line else int(fields[-1])
                owner.setdefault(key, fn)
                call_line = False
    hot = [k for k, v in cost.items() if v >= 0.9 * calls]
    pages = {(o, line >> 6) for o, line in cost}
    print(f"{len(cost)} lines ({len(cost) * 64 // 1024} KiB) in {len(pages)} pages; "
          f"{len(hot)} lines ({len(hot) * 64 // 1024} KiB) in nearly every call")
    for name, n in collections.Counter(owner[k] for k in hot).most_common(top):
        print(f"{n:5d}  {name[:150]}")


if __name__ == "__main__":
    main()
