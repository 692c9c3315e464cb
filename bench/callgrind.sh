#!/usr/bin/env bash
# bench/callgrind.sh: instructions per operation for tether's basic operations,
# counted by valgrind --tool=callgrind. Each script in bench/callgrind/ runs at
# N=1000 and N=11000; (Ir(11000) - Ir(1000)) / 10000 is the cost of one op
# without startup. Also prints, per op, the functions that cost the most
# (self instructions, same subtraction), to show where the time goes.
#   TOP=12  functions listed per script;  SCRIPTS="spawn cancel"  a subset
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed"; exit 1; }
[ -f build/tether/core.so ] || { echo "callgrind.sh: build tether first (make)"; exit 1; }
export LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;'
# keep C modules mapped at exit so callgrind can name their functions
export LUA_INIT_5_4='local m = getmetatable(debug.getregistry()._CLIBS); if m then m.__gc = nil end'
OUT=bench/out/callgrind
mkdir -p "$OUT"
SCRIPTS=${SCRIPTS:-"floor spawn w1task checkpoint sleep cancel"}
N1=1000 N2=11000
for s in $SCRIPTS; do
  for n in $N1 $N2; do
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$s.$n.out" \
      lua5.4 "bench/callgrind/$s.lua" "$n" >/dev/null 2>"$OUT/$s.$n.log" \
      || { echo "callgrind.sh: $s N=$n failed:"; tail -5 "$OUT/$s.$n.log"; exit 1; }
    callgrind_annotate --inclusive=no --auto=no --threshold=100 "$OUT/$s.$n.out" > "$OUT/$s.$n.txt"
    callgrind_annotate --inclusive=yes --auto=no --threshold=100 "$OUT/$s.$n.out" > "$OUT/$s.$n.incl.txt"
  done
done
exec /usr/bin/python3 - "$OUT" $N1 $N2 ${TOP:-12} $SCRIPTS <<'PY'
import re, sys
out, n1, n2, top, scripts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
DESC = {
    "floor": "raw coroutine create+resume+resume (no tether)",
    "spawn": "spawn a task that returns at once",
    "w1task": "spawn a task that does sleep(0) once (a W1 task)",
    "checkpoint": "tether.checkpoint() in one task",
    "sleep": "spawn a task that sleeps 1..50 ms (N timers pending)",
    "cancel": "spawn a task parked on sleep(3600), cancelled by a failing sibling",
}
def parse(path):
    total, funcs = None, {}
    for line in open(path):
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+PROGRAM TOTALS", line) or re.match(r"\s*([\d,]+)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*?)\s*$", line)
        if m and ":" in m.group(2) and total is not None and "=>" not in line:
            loc, _, fn = m.group(2).rpartition(":")
            name = fn.split(" [")[0]
            obj = re.search(r"\[(.*?)\]", fn)
            obj = obj.group(1).rsplit("/", 1)[-1] if obj else ""
            key = f"{name} ({obj})" if obj else name
            funcs[key] = funcs.get(key, 0) + int(m.group(1).replace(",", ""))
    return total, funcs
rows = {}
print(f"Instructions per op = (Ir(N={n2}) - Ir(N={n1})) / {n2 - n1}\n")
print("| op | instructions per op |")
print("|---|---:|")
detail = []
for s in scripts:
    t1, f1 = parse(f"{out}/{s}.{n1}.txt")
    t2, f2 = parse(f"{out}/{s}.{n2}.txt")
    per = (t2 - t1) / (n2 - n1)
    rows[s] = per
    print(f"| {s}: {DESC.get(s, s)} | {per:,.0f} |")
    diffs = sorted(((f2.get(k, 0) - f1.get(k, 0)) / (n2 - n1), k) for k in set(f1) | set(f2))
    diffs.reverse()
    by_obj = {}
    for v, k in diffs:
        obj = k.rsplit(" (", 1)[-1].rstrip(")") if k.endswith(")") else "?"
        obj = {"lua5.4": "Lua VM (lua5.4)", "core.so": "tether core (core.so)"}.get(obj, obj)
        if obj.startswith("libc"):
            obj = "libc (malloc/free/strcmp...)"
        if obj.startswith("libuv"):
            obj = "libuv"
        by_obj[obj] = by_obj.get(obj, 0) + v
    _, i1 = parse(f"{out}/{s}.{n1}.incl.txt")
    _, i2 = parse(f"{out}/{s}.{n2}.incl.txt")
    incl = sorted((((i2.get(k, 0) - i1.get(k, 0)) / (n2 - n1)), k) for k in set(i1) | set(i2) if k.endswith("(core.so)"))
    incl.reverse()
    detail.append((s, per, diffs[:top], by_obj, incl[:top]))
if "spawn" in rows:
    print()
    for s in ("w1task", "sleep", "cancel"):
        if s in rows:
            print(f"- {s} − spawn: {rows[s] - rows['spawn']:,.0f} instructions")
    if "sleep" in rows and "cancel" in rows:
        print(f"- cancel − sleep (cancel+unwind instead of a timer firing): {rows['cancel'] - rows['sleep']:,.0f}")
for s, per, top_fns, by_obj, incl in detail:
    print(f"\n### {s}: {per:,.0f} instructions per op\n")
    print("Self cost per op by object: " + ", ".join(
        f"{o} {v:,.0f} ({v / per * 100:.0f}%)" for o, v in sorted(by_obj.items(), key=lambda kv: -kv[1]) if v >= 0.5))
    print("\n| top functions, self (object) | Ir per op | share |")
    print("|---|---:|---:|")
    for v, k in top_fns:
        print(f"| `{k}` | {v:,.0f} | {v / per * 100:.0f}% |")
    if incl:
        print("\n| tether core functions, inclusive | Ir per op | share |")
        print("|---|---:|---:|")
        for v, k in incl:
            if v >= 1:
                print(f"| `{k.rsplit(' (', 1)[0]}` | {v:,.0f} | {v / per * 100:.0f}% |")
PY
