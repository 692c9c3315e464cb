#!/usr/bin/env python3
"""bench/driver.py: runs every (workload, system) script several times,
interleaved, and prints/writes the table of medians, min-max and ratios
(tether / anchor), with the targets checked.

Called by bench/run.sh from the repository root. Environment:
  QUICK=1        N/10 and one run (scaling: N/10 too, one run)
  RUNS=5         runs per (workload, system) at the main N
  N=100000       the main N
  SCALE_RUNS=3   runs per point for the 10k and 1M scaling points
                 (the 100k point reuses the main runs)
  SCALE=0        skip the scaling section
  ONLY=w1,w3     run only these workloads (debugging)
  SYSTEMS=a,b    run only these systems (debugging)
  RESULTS=path   where to write the markdown (default bench/results.md); the
                 bar charts go next to it (results.svg)
  BASE=dir       also run tether from another checkout's build (dir/lua and
                 dir/build/tether/core.so) as the system tether-base: a
                 before/after in one run, interleaved like every system
Every script prints one line `RESULT <work> <system> n=<N> value=<v> unit=<u>`
and exits non-zero when its work check fails.
"""
import os
import platform
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
PY = "/usr/bin/python3"          # Debian's python: has trio (pyenv's may not)
TIMEOUT = 900

QUICK = os.environ.get("QUICK", "0") not in ("", "0")
N_MAIN = int(os.environ.get("N", "100000"))
RUNS = int(os.environ.get("RUNS", "5"))
SCALE_RUNS = int(os.environ.get("SCALE_RUNS", "3"))
SCALE_NS = [10000, 100000, 1000000]
if QUICK:
    N_MAIN //= 10
    RUNS = 1
    SCALE_RUNS = 1
    SCALE_NS = [n // 10 for n in SCALE_NS]
DO_SCALE = os.environ.get("SCALE", "1") not in ("", "0")
ONLY = set(filter(None, os.environ.get("ONLY", "").split(",")))
ONLY_SYS = set(filter(None, os.environ.get("SYSTEMS", "").split(",")))
RESULTS = os.environ.get("RESULTS", os.path.join(ROOT, "bench", "results.md"))
CHART = os.path.splitext(RESULTS)[0] + ".svg"
BASE = os.environ.get("BASE", "")

# The same process-level conditions for every system: a fresh process per run,
# started from the repository root with the same environment (the Lua paths are
# set for every process, harmless to the others), stdin from /dev/null, the
# same timeout, default runtime settings (no GC tuning, no pinning).
# tether is run from a snapshot of lua/ and build/tether/core.so taken when the
# driver starts, so that a rebuild during the run cannot mix two versions.
SNAP = os.path.join(OUT, "snapshot")
BASE_SNAP = os.path.join(OUT, "snapshot-base")
ENV = dict(os.environ)
ENV["LUA_PATH"] = f"{SNAP}/lua/?.lua;{SNAP}/lua/?/init.lua;;"
ENV["LUA_CPATH"] = f"{SNAP}/build/?.so;;"
for k in ("QUICK", "RUNS", "N", "SCALE_RUNS", "SCALE", "ONLY", "SYSTEMS", "RESULTS", "BASE"):
    ENV.pop(k, None)
# tether-base: the same scripts against the BASE build's snapshot
BASE_ENV = dict(ENV)
BASE_ENV["LUA_PATH"] = f"{BASE_SNAP}/lua/?.lua;{BASE_SNAP}/lua/?/init.lua;;"
BASE_ENV["LUA_CPATH"] = f"{BASE_SNAP}/build/?.so;;"

WORKLOADS = {
    "w1": dict(title="W1 spawn-join", unit="µs per task", scale=1e-3, fmt="{:.2f}"),
    "w2": dict(title="W2 timers", unit="s (wall − 50 ms)", scale=1, fmt="{:.3f}"),
    "w3": dict(title="W3 cancel", unit="s (raise → group raised, all N unwound)", scale=1, fmt="{:.3f}"),
    "w5": dict(title="W5 memory", unit="bytes RSS per parked task", scale=1, fmt="{:.0f}"),
    "w10_0": dict(title="W10 channel throughput, capacity 0", unit="million values per second "
                  "(tether / this above 1: tether is faster)", scale=1e-6, fmt="{:.2f}"),
    "w10_100": dict(title="W10 channel throughput, capacity 100", unit="million values per second "
                    "(tether / this above 1: tether is faster)", scale=1e-6, fmt="{:.2f}"),
    "w4": dict(title="W4 TCP echo", unit="round trips per second (higher is better: "
               "tether / this above 1 means tether is faster)", scale=1, fmt="{:.0f}"),
    # W7 runs real processes: its own N (1,000; QUICK: 100)
    "w7": dict(title="W7 processes (`true`, at most 8 at once)", unit="processes per second "
               "(tether / this above 1: tether is faster)", scale=1, fmt="{:.0f}", n=1000),
    # W8/W9 run at their own N (`n`; QUICK: n/10).
    "w8": dict(title="W8 thread offload", unit="ms for N CPU-bound jobs of ~10 ms", scale=1, fmt="{:.0f}", n=64),
    "w8o": dict(title="W8 overhead", unit="µs per call of a trivial function, one after another",
                scale=1e-3, fmt="{:.2f}", n=2000),
    "w9": dict(title="W9 small files", unit="files per second, 4 KiB each, read concurrently "
               "(tether / this above 1: tether is faster)", scale=1, fmt="{:.0f}", n=1000),
}

# W4: C clients (the script's N) each do R round trips; the main point is
# C = 100, R = 1000; the scaling points keep about 100k round trips per run.
W4_C = 100
W4_SCALE_C = [10, 100, 1000]
W4_FLOOR = os.path.join(OUT, "w4_echo")


def w4_rounds(c):
    r = 1000 if c <= 100 else 100000 // c
    return max(10, r // 10) if QUICK else r

# W10 runs one script per system (w10) with the capacity as an extra argument,
# at 10 x N values (1,000,000 in full mode).
W10_CAPS = {"w10_0": "0", "w10_100": "100"}


def base(w):
    return "w10" if w in W10_CAPS else w


def n_of(w, n=None):
    if w == "w4":
        return W4_C if n is None else n
    if "n" in WORKLOADS[w]:
        return WORKLOADS[w]["n"] // 10 if QUICK else WORKLOADS[w]["n"]
    n = N_MAIN if n is None else n
    return n * 10 if w in W10_CAPS else n

# system -> how to run its script for a workload (None: no such script)
def lua(path):
    return ["lua5.4", path]

SYSTEMS = {
    "tether": lambda w: lua(f"bench/tether/{base(w)}.lua"),
    "tether-base": lambda w: lua(f"bench/tether/{base(w)}.lua") if BASE else None,
    "floor-coroutine": lambda w: lua(f"bench/floor/{base(w)}_coroutine.lua") if w in ("w1", "w5") or w in W10_CAPS
                                 else None,
    "floor-sched": lambda w: lua("bench/floor/w10_sched.lua") if w in W10_CAPS else None,
    "floor-coroutine-1by1": lambda w: lua("bench/floor/w1_coroutine_1by1.lua") if w == "w1" else None,
    "floor-luv-timer": lambda w: lua(f"bench/floor/{w}_luv_timer.lua") if w in ("w1", "w2") else None,
    "floor-serial": lambda w: lua("bench/floor/w8_serial.lua") if w == "w8" else None,
    "luv": lambda w: lua(f"bench/luv/{base(w)}.lua"),
    "cqueues": lambda w: lua(f"bench/cqueues/{base(w)}.lua") if w != "w7" else None,
    "asyncio": lambda w: [PY, f"bench/python/{base(w)}_asyncio.py"],
    "trio": lambda w: [PY, f"bench/python/{base(w)}_trio.py"],
    "node": lambda w: ["node", "--expose-gc", f"bench/node/{base(w)}.js"],
    "floor-c": lambda w: [W4_FLOOR] if w == "w4" else None,
}
FLOORS = ("floor-coroutine", "floor-coroutine-1by1", "floor-luv-timer", "floor-sched", "floor-c", "floor-serial")
ANCHORS = ("luv", "cqueues", "asyncio", "trio", "node")
SCALE_SYSTEMS = ("tether", "floor-coroutine", "luv", "cqueues")   # the 1M points are cheap for these

DESCR = {
    "tether": "tether (`with_group` + `spawn`)",
    "tether-base": "tether, baseline build (BASE)",
    "floor-coroutine": "floor: raw coroutine create+resume+resume (N alive)",
    "floor-coroutine-1by1": "floor, one at a time: create+resume+resume (memory reused)",
    "floor-luv-timer": "floor: raw luv timer + callback",
    "floor-sched": "floor: a loop resumes producer and consumer (4 switches per value)",
    "floor-serial": "floor: the same jobs one after another in one Lua state",
    "luv": "hand-written coroutines over luv",
    "cqueues": "cqueues",
    "asyncio": "Python asyncio.TaskGroup",
    "trio": "Python Trio nursery",
    "node": "Node.js Promise.all + AbortController",
    "floor-c": "floor: plain C on libuv (W4 echo, callbacks)",
}

# What each system's W10 script uses (the group-and-task wording above does not fit).
DESCR_W10 = {
    "tether": "tether (`tether.channel`, `for v in recv`)",
    "floor-coroutine": "floor: producer resumes the consumer directly (2 switches per value)",
    "luv": "hand-written coroutine queue over luv (bench/luv/queue.lua)",
    "cqueues": "cqueues: buffer + two condition variables",
    "asyncio": "Python asyncio.Queue (capacity 0: maxsize 1 + join)",
    "trio": "Python Trio memory channel",
    "node": "Node.js hand-written async queue (promises)",
}


# ... and of W4 (a server and clients).
DESCR_W4 = {
    "tether": "tether (`tcp.serve`, `tcp.connect`, `write`, `read_exactly`)",
    "luv": "hand-written luv: callback server, coroutine clients",
    "cqueues": "cqueues sockets (`cq:wrap` per connection and client)",
    "asyncio": "Python asyncio streams (`start_server`, `open_connection`)",
    "trio": "Python Trio (`serve_tcp`, `open_tcp_stream`)",
    "node": "Node.js `net` ('data' events, promises)",
}

# ... and what the W8/W9 scripts use.
DESCR_W = {
    ("tether", "w8"): "tether (`thread.run`, every job spawned at once)",
    ("tether", "w8o"): "tether (`thread.run`)",
    ("tether", "w9"): "tether (`fs.read_file`, a task per file)",
    ("luv", "w8"): "hand-written luv (`uv.new_work`, every job queued at once)",
    ("luv", "w8o"): "hand-written luv (`uv.new_work`, the next queued by the callback)",
    ("luv", "w9"): "hand-written luv (`fs_open` → `fs_fstat` → `fs_read` → `fs_close` per file)",
    ("node", "w9"): "Node.js `fs.promises.readFile` + Promise.all",
    ("trio", "w9"): "Python Trio `trio.Path.read_bytes` in a nursery",
    ("asyncio", "w9"): "Python asyncio `to_thread(Path.read_bytes)` + gather",
}


# ... and each system's W7 script.
DESCR_W7 = {
    "tether": "tether (`process.run` in a group with `limit = 8`)",
    "luv": "hand-written `uv.spawn` callbacks over luv",
    "asyncio": "Python asyncio `create_subprocess_exec` + `communicate`",
    "trio": "Python Trio `trio.run_process`",
    "node": "Node.js `child_process.execFile`",
}


def descr(w, s):
    if w == "w4":
        return DESCR_W4.get(s, DESCR[s])
    if w == "w7":
        return DESCR_W7.get(s, DESCR[s])
    if (s, w) in DESCR_W:
        return DESCR_W[(s, w)]
    return DESCR_W10.get(s, DESCR[s]) if w in W10_CAPS else DESCR[s]


def command(s, w):
    """How to run system s for workload w, or None: no such script."""
    cmd = SYSTEMS[s](w)
    if cmd is None or not os.path.exists(os.path.join(ROOT, cmd[-1])):
        return None
    return cmd


PROBES = {
    "tether": ["lua5.4", "-e", "local t = require('tether'); assert(t.run and t.with_group)"],
    "tether-base": ["lua5.4", "-e", "local t = require('tether'); assert(t.run and t.with_group)"],
    "floor-coroutine": ["lua5.4", "-e", "require('luv')"],
    "floor-coroutine-1by1": ["lua5.4", "-e", "require('luv')"],
    "floor-luv-timer": ["lua5.4", "-e", "require('luv')"],
    "floor-sched": ["lua5.4", "-e", "require('luv')"],
    "floor-serial": ["lua5.4", "-e", "require('luv')"],
    "luv": ["lua5.4", "-e", "require('luv')"],
    "cqueues": ["lua5.4", "-e", "require('cqueues'); require('cqueues.condition'); require('luv')"],
    "asyncio": [PY, "-c", "import asyncio; asyncio.TaskGroup"],
    "trio": [PY, "-c", "import trio"],
    "node": ["node", "-e", "require('timers/promises')"],
    "floor-c": ["sh", "-c", f"test -x {W4_FLOOR}"],
}

W4_SCALE_SYSTEMS = ("tether", "luv", "floor-c")   # the C = 10 and C = 1000 points


def build_w4_floor():
    """Compile bench/floor/w4_echo.c (the W4 floor) into bench/out/."""
    src = os.path.join(ROOT, "bench", "floor", "w4_echo.c")
    try:
        p = subprocess.run(["cc", "-O2", "-std=c99", "-D_POSIX_C_SOURCE=200809L", "-o", W4_FLOOR, src, "-luv"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print(f"  could not build the W4 floor: {p.stderr.strip()[-200:]}")
    except OSError as e:
        print(f"  could not build the W4 floor: {e}")


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"? ({e})"


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    info = [
        ("date", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("nproc", sh("nproc")),
        ("CPU", cpu),
        ("memory", mem),
        ("kernel", platform.release()),
        ("page-fault cost", page_fault_cost()),
        ("tether", "git " + (sh("git -C %s describe --always --dirty 2>/dev/null" % ROOT) or "(no commit)")),
        ("Lua", sh("lua5.4 -v 2>&1")),
        ("libuv (system)", sh("pkg-config --modversion libuv 2>/dev/null")),
        ("luv", sh("lua5.4 -e \"print(require('luv').version_string())\" 2>&1") + " (libuv inside luv)"),
        ("cqueues", sh("lua5.4 -e \"print(require('cqueues').VERSION)\" 2>&1")),
        ("python", sh(f"{PY} -c 'import sys; print(sys.version.split()[0])'") + f" ({PY})"),
        ("trio", sh(f"{PY} -c 'import trio; print(trio.__version__)'")),
        ("node", sh("node --version")),
    ]
    return info


def load_avg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def page_fault_cost():
    """Cost of first-touching fresh anonymous memory (µs per 4 KiB page):
    on some VMs it dominates every benchmark that allocates."""
    import mmap
    n = 64 << 20
    m = mmap.mmap(-1, n)
    t0 = time.perf_counter()
    for i in range(0, n, 4096):
        m[i] = 1
    dt = time.perf_counter() - t0
    m.close()
    return f"{dt / (n // 4096) * 1e6:.1f} µs per 4 KiB page first touched"


def make_delays(n):
    """The W2 delay list, shared by every system: integer ms in 1..50 from a
    fixed-seed LCG (glibc's constants, modulus 2^31)."""
    path = os.path.join(OUT, f"delays-{n}.txt")
    x = 12345
    ds = []
    for _ in range(n):
        x = (1103515245 * x + 12345) % 2**31
        ds.append(1 + (x >> 16) % 50)
    ds[0] = 50                  # the maximum is always in the list (wall − 50 ms)
    with open(path, "w") as f:
        f.write("".join(f"{d}\n" for d in ds))
    return path


def make_w9_files(n):
    """The W9 files, shared by every system: DIR/NNNNN.dat, 4096 bytes each,
    starting with "file i\n" (made once; the scripts check them)."""
    path = os.path.join(OUT, f"w9-{n}")
    os.makedirs(path, exist_ok=True)
    for i in range(1, n + 1):
        head = f"file {i}\n".encode()
        name = os.path.join(path, f"{i:05d}.dat")
        if not os.path.exists(name) or os.path.getsize(name) != 4096:
            with open(name, "wb") as f:
                f.write(head + b"x" * (4096 - len(head)))
    return path


def run_one(system, work, n, delays):
    cmd = command(system, work) + [str(n)]
    if work == "w2":
        cmd.append(delays[n])
    if work in W10_CAPS:
        cmd.append(W10_CAPS[work])
    if work == "w4":
        cmd.append(str(w4_rounds(n)))
    if work == "w9":
        cmd.append(delays["w9"])
    t0 = time.time()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=BASE_ENV if system == "tether-base" else ENV,
                           stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=TIMEOUT)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, err, rc = e.stdout or "", f"timeout after {TIMEOUT}s", -1
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
    dt = time.time() - t0
    name = "tether" if system == "tether-base" else system   # the same script prints it
    m = re.search(rf"^RESULT {work} {re.escape(name)} n=(\d+) value=(\S+) unit=(\S+)$", out, re.M)
    with open(os.path.join(OUT, "raw.txt"), "a") as f:
        f.write(f"# {' '.join(cmd)} rc={rc} {dt:.1f}s\n{out}")
        if err.strip():
            f.write("".join(f"# stderr: {l}\n" for l in err.strip().splitlines()[-20:]))
    if rc != 0 or not m or int(m.group(1)) != n:
        msg = (err.strip().splitlines() or [f"exit {rc}, no RESULT line"])[-1]
        print(f"  FAIL {work} {system} n={n}: {msg}", flush=True)
        return None, msg
    v = float(m.group(2))
    print(f"  {work} {system:20s} n={n:<8d} {v:.6g} {m.group(3)}  ({dt:.1f}s)", flush=True)
    return v, None


class Cell:
    def __init__(self):
        self.values = []
        self.failure = None

    @property
    def ok(self):
        return self.values and self.failure is None

    @property
    def median(self):
        return statistics.median(self.values)


def run_matrix(jobs, runs, delays, label):
    """jobs: list of (work, system, n). Interleaved: run 1 of every job, then run 2, ..."""
    cells = {j: Cell() for j in jobs}
    for r in range(runs):
        print(f"[{label}] run {r + 1}/{runs}", flush=True)
        for j in jobs:
            c = cells[j]
            if c.failure:
                continue
            v, failure = run_one(j[1], j[0], j[2], delays)
            if failure:
                c.failure = failure
            else:
                c.values.append(v)
    return cells


def fmt(work, v):
    w = WORKLOADS[work]
    return w["fmt"].format(v * w["scale"])


def snapshot(root=ROOT, snap=SNAP):
    """Copy root's lua/ and build/tether/core.so to snap; return a short
    hash of core.so (or None when tether is not built there)."""
    import hashlib
    import shutil
    shutil.rmtree(snap, ignore_errors=True)
    core = os.path.join(root, "build", "tether", "core.so")
    if not os.path.exists(core):
        return None
    shutil.copytree(os.path.join(root, "lua"), os.path.join(snap, "lua"))
    os.makedirs(os.path.join(snap, "build", "tether"))
    shutil.copy2(core, os.path.join(snap, "build", "tether", "core.so"))
    with open(core, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def main():
    os.makedirs(OUT, exist_ok=True)
    core_hash = snapshot()
    build_w4_floor()
    open(os.path.join(OUT, "raw.txt"), "w").close()
    started = time.time()
    load_start = load_avg()
    info = machine_info()
    info.insert(7, ("tether core.so", f"sha256 {core_hash}" if core_hash else "not built"))
    print("machine:")
    for k, v in info:
        print(f"  {k}: {v}")

    available = {}
    for s, probe in PROBES.items():
        if ONLY_SYS and s not in ONLY_SYS:
            continue
        try:
            if s == "tether-base" and not (BASE and snapshot(BASE, BASE_SNAP)):
                available[s] = False
                if BASE:
                    print(f"  UNAVAILABLE {s}: no build/tether/core.so under {BASE}")
                continue
            p = subprocess.run(probe, cwd=ROOT, env=BASE_ENV if s == "tether-base" else ENV,
                               capture_output=True, text=True)
            available[s] = p.returncode == 0
            why = (p.stderr.strip().splitlines() or ['?'])[-1]
        except OSError as e:          # the program itself is missing (no node here)
            available[s], why = False, str(e)
        if not available[s]:
            print(f"  UNAVAILABLE {s}: {why}")

    works = [w for w in WORKLOADS if not ONLY or w in ONLY]
    ns = {N_MAIN} | (set(SCALE_NS) if DO_SCALE else set())
    delays = {n: make_delays(n) for n in ns} if "w2" in works else {}
    if "w9" in works:
        delays["w9"] = make_w9_files(n_of("w9"))

    jobs = [(w, s, n_of(w)) for w in works for s in SYSTEMS
            if s in available and available[s] and command(s, w) is not None]
    cells = run_matrix(jobs, RUNS, delays, f"N={N_MAIN}")

    scale_cells = {}
    scale_works = [w for w in ("w1", "w3") if w in works] if DO_SCALE else []
    if scale_works:
        sjobs = [(w, s, n) for n in SCALE_NS if n != N_MAIN for w in scale_works for s in SCALE_SYSTEMS
                 if available.get(s) and command(s, w) is not None]
        scale_cells = run_matrix(sjobs, SCALE_RUNS, delays, "scaling")
        for (w, s, n), c in cells.items():
            if w in scale_works and s in SCALE_SYSTEMS:
                scale_cells[(w, s, n)] = c
    if DO_SCALE and "w4" in works:
        w4jobs = [("w4", s, c) for c in W4_SCALE_C if c != W4_C for s in W4_SCALE_SYSTEMS
                  if available.get(s)]
        w4cells = run_matrix(w4jobs, SCALE_RUNS, delays, "W4 scaling")
        for (w, s, n), c in cells.items():
            if w == "w4" and s in W4_SCALE_SYSTEMS:
                w4cells[(w, s, n)] = c
        scale_cells.update(w4cells)

    info.append(("load average", f"{load_start} at the start, {load_avg()} at the end (other work on the "
                 "machine during a run inflates and spreads the figures)"))
    md, failures = report(info, available, works, cells, scale_cells, scale_works, time.time() - started)
    print()
    print(md)
    with open(RESULTS, "w") as f:
        f.write(md)
    with open(CHART, "w") as f:
        f.write(chart_svg(works, cells))
    print(f"(written to {os.path.relpath(RESULTS, ROOT)}, bar charts in {os.path.relpath(CHART, ROOT)}; "
          "raw output in bench/out/raw.txt)")
    if failures:
        print(f"{failures} benchmark(s) FAILED their work check or did not run", file=sys.stderr)
        return 1
    if not available.get("tether"):
        print("tether is not available (build it with `make`): no tether figures", file=sys.stderr)
        return 2
    return 0


def report(info, available, works, cells, scale_cells, scale_works, elapsed):
    L = []
    mode = "QUICK (N/10, one run)" if QUICK else f"full ({RUNS} runs per cell)"
    L.append(f"# tether benchmarks — {mode}\n")
    L.append("Machine:\n")
    for k, v in info:
        L.append(f"- {k}: {v}")
    L.append(f"\nTotal time: {elapsed / 60:.1f} min. Figures are medians over the runs, "
             "with min–max; ratio = tether median / that system's median "
             "(below 1: tether is faster or smaller).\n")
    failures = 0
    targets = []

    def cell(w, s, n=None, src=cells):
        return src.get((w, s, n_of(w, n)))

    for w in works:
        meta = WORKLOADS[w]
        what = (f"C = {W4_C} clients × {w4_rounds(W4_C)} round trips of 64 bytes" if w == "w4"
                else f"N = {n_of(w)}")
        L.append(f"## {meta['title']} — {what}, {meta['unit']}\n")
        L.append("| system | median | min–max | runs | tether / this |")
        L.append("|---|---:|---:|---:|---:|")
        tc = cell(w, "tether")
        for s in SYSTEMS:
            if command(s, w) is None:
                continue
            c = cell(w, s)
            if c is None:
                reason = "not available" if s in available else "not run"
                L.append(f"| {descr(w, s)} | — | {reason} | 0 | — |")
                continue
            if c.failure:
                failures += 1
                L.append(f"| {descr(w, s)} | **FAIL** | {c.failure[:80]} | {len(c.values)} | — |")
                continue
            ratio = "—"
            if tc is not None and tc.ok:
                ratio = "1.00" if s == "tether" else f"{tc.median / c.median:.2f}"
            L.append(f"| {descr(w, s)} | {fmt(w, c.median)} | {fmt(w, min(c.values))}–{fmt(w, max(c.values))} "
                     f"| {len(c.values)} | {ratio} |")
        L.append("")
        targets.append(check_target(w, cells))

    if scale_works:
        L.append("## Scaling — per-task cost at each N (median; W3 = ns per cancelled task)\n")
        ns = SCALE_NS
        L.append("| workload | system | " + " | ".join(f"N={n}" for n in ns) + " | max/min |")
        L.append("|---|---|" + "---:|" * len(ns) + "---:|")
        for w in scale_works:
            for s in SCALE_SYSTEMS:
                if command(s, w) is None or not available.get(s):
                    continue
                vals, row = [], []
                for n in ns:
                    c = scale_cells.get((w, s, n))
                    if c is None:
                        row.append("—")
                    elif c.failure:
                        failures += 1 if n != N_MAIN else 0     # main-N failures already counted
                        row.append("FAIL")
                    else:
                        per = c.median if w == "w1" else c.median / n * 1e9
                        vals.append(per)
                        row.append(f"{per:.0f} ns")
                spread = f"{max(vals) / min(vals):.2f}" if len(vals) == len(ns) else "—"
                L.append(f"| {w} | {DESCR[s]} | " + " | ".join(row) + f" | {spread} |")
                if s == "tether":
                    targets.append((f"scaling {w}: tether per-task cost flat over N={ns[0]}..{ns[-1]} "
                                    "(max/min ≤ 1.5)",
                                    None if spread == "—" else float(spread) <= 1.5,
                                    f"max/min = {spread}"))
        L.append("")

    if DO_SCALE and "w4" in works:
        L.append("## W4 at C = 10, 100, 1000 clients — round trips per second (median)\n")
        L.append("| system | " + " | ".join(f"C={c} (R={w4_rounds(c)})" for c in W4_SCALE_C) + " |")
        L.append("|---|" + "---:|" * len(W4_SCALE_C))
        for s in W4_SCALE_SYSTEMS:
            if not available.get(s):
                continue
            row = []
            for c in W4_SCALE_C:
                x = scale_cells.get(("w4", s, c))
                row.append("—" if x is None else "FAIL" if x.failure else f"{x.median:.0f}")
            L.append(f"| {descr('w4', s)} | " + " | ".join(row) + " |")
        for s in W4_SCALE_SYSTEMS[1:]:
            row = []
            for c in W4_SCALE_C:
                t, x = scale_cells.get(("w4", "tether", c)), scale_cells.get(("w4", s, c))
                row.append(f"{t.median / x.median:.2f}" if t is not None and t.ok and x is not None and x.ok
                           else "—")
            L.append(f"| tether / {s} | " + " | ".join(row) + " |")
        L.append("")

    L.append("## Targets\n")
    L.append("| target | held? | figures |")
    L.append("|---|---|---|")
    for name, held, detail in targets:
        mark = "n/a" if held is None else ("**held**" if held else "**MISSED**")
        L.append(f"| {name} | {mark} | {detail} |")
    L.append("")
    return "\n".join(L) + "\n", failures


def check_target(w, cells):
    def med(s):
        c = cells.get((w, s, n_of(w)))
        return c.median if c is not None and c.ok else None

    t = med("tether")
    anchors = {s: med(s) for s in ANCHORS if med(s) is not None}
    if w == "w1":
        f = med("floor-coroutine")
        name = "W1: tether ≤ 1.25× the raw-coroutine floor (N alive)"
        if t is None or f is None:
            return name, None, "missing figures"
        extra = ""
        f1 = med("floor-coroutine-1by1")
        if f1 is not None:
            extra = f" (against the one-at-a-time floor {f1 / 1000:.2f} µs: ratio {t / f1:.2f})"
        return name, t <= 1.25 * f, f"tether {t / 1000:.2f} µs, floor {f / 1000:.2f} µs, ratio {t / f:.2f}{extra}"
    if w == "w2":
        name = "W2: tether overhead ≤ 0.75× the best anchor"
        if t is None or not anchors:
            return name, None, "missing figures"
        best = min(anchors, key=anchors.get)
        b = anchors[best]
        return name, t <= 0.75 * b, f"tether {t:.3f} s, best anchor {best} {b:.3f} s, ratio {t / b:.2f}"
    if w == "w3":
        name = "W3: tether ≤ 0.40× hand-written luv (every anchor here counts its unwinding)"
        l = med("luv")
        if t is None or l is None:
            return name, None, "missing figures"
        best = min(anchors, key=anchors.get)
        return name, t <= 0.40 * l, (f"tether {t:.3f} s, luv {l:.3f} s, ratio {t / l:.2f}; "
                                     f"best anchor {best} {anchors[best]:.3f} s, ratio {t / anchors[best]:.2f}")
    if w == "w4":
        l, f = med("luv"), med("floor-c")
        name = "W4: tether ≥ 1.1× hand-written luv and ≥ 0.95× the plain-C floor (round trips/s)"
        if t is None or l is None or f is None:
            return name, None, "missing figures"
        return (name, t >= 1.1 * l and t >= 0.95 * f,
                f"tether {t:.0f} rt/s, luv {l:.0f} (ratio {t / l:.2f}), C floor {f:.0f} (ratio {t / f:.2f})")
    if w in W10_CAPS:
        name = f"W10 capacity {W10_CAPS[w]}: tether ≥ 1.25× the best anchor (values per second)"
        if t is None or not anchors:
            return name, None, "missing figures"
        best = max(anchors, key=anchors.get)
        b = anchors[best]
        return name, t >= 1.25 * b, (f"tether {t / 1e6:.2f} M/s, best anchor {best} {b / 1e6:.2f} M/s, "
                                     f"ratio {t / b:.2f}")
    if w == "w7":
        name = "W7: tether ≥ 0.95× hand-written luv and ≥ 1.5× the best non-Lua anchor (processes per second)"
        l = med("luv")
        others = {s: v for s, v in anchors.items() if s in ("asyncio", "trio", "node")}
        if t is None or l is None or not others:
            return name, None, "missing figures"
        best = max(others, key=others.get)
        b = others[best]
        return (name, t >= 0.95 * l and t >= 1.5 * b,
                f"tether {t:.0f}/s, luv {l:.0f}/s (ratio {t / l:.2f}), best non-Lua {best} {b:.0f}/s "
                f"(ratio {t / b:.2f})")
    if w == "w5":
        name = "W5: tether (tasks parked on one Event) ≤ the hand-written luv figure"
        l = med("luv")
        if t is None or l is None:
            return name, None, "missing figures"
        f = med("floor-coroutine")
        extra = f"; bare coroutine {f:.0f} B, ratio {t / f:.2f}" if f is not None else ""
        return name, t <= l, f"tether {t:.0f} B, luv {l:.0f} B, ratio {t / l:.2f}{extra}"
    if w == "w8":
        name = "W8: thread.run speedup over the same jobs in one thread ≥ 1.8×"
        f = med("floor-serial")
        if t is None or f is None:
            return name, None, "missing figures"
        extra = f"; luv {med('luv'):.0f} ms" if med("luv") is not None else ""
        return name, f / t >= 1.8, f"tether {t:.0f} ms, one thread {f:.0f} ms, speedup {f / t:.2f}×{extra}"
    if w == "w8o":
        name = "W8: overhead of one thread.run ≤ luv's hand-written uv.new_work"
        l = med("luv")
        if t is None or l is None:
            return name, None, "missing figures"
        return name, t <= l, f"tether {t / 1e3:.2f} µs, luv {l / 1e3:.2f} µs, ratio {t / l:.2f}"
    if w == "w9":
        name = "W9: tether files/s ≥ 1.25× the best anchor"
        if t is None or not anchors:
            return name, None, "missing figures"
        best = max(anchors, key=anchors.get)
        b = anchors[best]
        return name, t >= 1.25 * b, f"tether {t:.0f}/s, best anchor {best} {b:.0f}/s, ratio {t / b:.2f}"


def esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "")


def chart_svg(works, cells):
    """One horizontal bar chart per workload, stacked in one SVG: each
    system's median as a bar (tether in colour, floors in grey, the other
    anchors in a muted blue), its min–max as a whisker, the value and the
    ratio tether / this at the bar's end.  Plain SVG 1.1, no script."""
    W, LABEL, BAR_H, GAP, VALUE = 980, 380, 18, 6, 150
    plot = W - LABEL - VALUE - 20
    out, y = [], 20
    for w in works:
        meta = WORKLOADS[w]
        rows = [(s, cells[(w, s, n_of(w))]) for s in SYSTEMS
                if (w, s, n_of(w)) in cells and cells[(w, s, n_of(w))].ok]
        if not rows:
            continue
        tc = dict(rows).get("tether")
        top = max(max(c.values) for _, c in rows) or 1
        higher = w in W10_CAPS or w in ("w4", "w9")
        what = f"C = {W4_C} clients" if w == "w4" else f"N = {n_of(w)}"
        out.append(f'<text x="10" y="{y + 14}" font-size="15" font-weight="bold">{esc(meta["title"])} — '
                   f'{esc(what)}</text>')
        out.append(f'<text x="10" y="{y + 32}" font-size="12" fill="#555">{esc(meta["unit"])}, median of '
                   f'{max(len(c.values) for _, c in rows)} runs, whisker min–max; '
                   f'{"higher" if higher else "lower"} is better</text>')
        y += 44
        for s, c in rows:
            scale = plot / top
            bw = max(1.0, c.median * scale)
            colour = "#d9480f" if s == "tether" else ("#f0a070" if s == "tether-base" else
                                                      ("#adb5bd" if s.startswith("floor") else "#4c6ef5"))
            weight = ' font-weight="bold"' if s == "tether" else ""
            out.append(f'<text x="{LABEL - 8}" y="{y + 13}" font-size="12" text-anchor="end"{weight}>'
                       f'{esc(descr(w, s))}</text>')
            out.append(f'<rect x="{LABEL}" y="{y}" width="{bw:.1f}" height="{BAR_H}" fill="{colour}"/>')
            lo, hi = LABEL + min(c.values) * scale, LABEL + max(c.values) * scale
            mid = y + BAR_H / 2
            out.append(f'<path d="M{lo:.1f} {mid}H{hi:.1f}M{lo:.1f} {mid - 4}V{mid + 4}M{hi:.1f} {mid - 4}V{mid + 4}" '
                       'stroke="#222" stroke-width="1" fill="none"/>')
            ratio = ""
            if tc is not None and s != "tether":
                ratio = f"  (tether / this {tc.median / c.median:.2f})"
            out.append(f'<text x="{max(hi, LABEL + bw) + 6:.1f}" y="{y + 13}" font-size="12"{weight}>'
                       f'{fmt(w, c.median)}{ratio}</text>')
            y += BAR_H + GAP
        y += 24
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{y}" viewBox="0 0 {W} {y}" '
            'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n'
            f'<rect width="{W}" height="{y}" fill="white"/>\n')
    return head + "\n".join(out) + "\n</svg>\n"


if __name__ == "__main__":
    sys.exit(main())
