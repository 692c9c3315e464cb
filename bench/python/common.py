"""Helpers shared by the Python benchmark scripts (asyncio and Trio)."""
import gc
import sys
import time

clock = time.perf_counter          # monotonic, high resolution

# see bench/lib/common.lua: the same 1 ms tolerance for every system
W2_TOLERANCE = 0.001


def n_arg():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    if n < 1:
        fail(f"bad N: {n}")
    return n


def delays(n):
    if len(sys.argv) < 3:
        fail("W2 needs the delay file as second argument")
    with open(sys.argv[2]) as f:
        d = [int(line) for _, line in zip(range(n), f)]
    if len(d) != n:
        fail(f"delay file has {len(d)} entries, need {n}")
    return d


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found")


def fullgc():
    gc.collect()
    gc.collect()


def result(work, system, n, value, unit):
    print(f"RESULT {work} {system} n={n} value={value:.6g} unit={unit}", flush=True)


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Boom(Exception):
    pass
