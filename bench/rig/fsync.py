#!/usr/bin/env python3
"""p50/p99 of one 4 KiB write + fdatasync in DIR (the disk the ledger's write-ahead log is on):
the cost issue 14's target 3 allows one durable write per request. usage: fsync.py DIR [N]"""
import os, statistics, sys, tempfile, time

d, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000
fd, path = tempfile.mkstemp(dir=d)
try:
    block, t = b"\0" * 4096, []
    for i in range(n):
        os.pwrite(fd, block, (i % 256) * 4096)
        a = time.perf_counter()
        os.fdatasync(fd)
        t.append((time.perf_counter() - a) * 1000)
    t.sort()
    print(f"fdatasync of a 4 KiB write in {d}: p50 {statistics.median(t):.3f} ms, p99 {t[int(len(t) * 0.99)]:.3f} ms (n={n})")
finally:
    os.close(fd)
    os.unlink(path)
