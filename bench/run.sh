#!/usr/bin/env bash
# bench/run.sh: run every benchmark for tether and its anchors and write the
# table to the terminal and to bench/results.md. `make bench` runs this.
#   QUICK=1   quick mode: N/10, one run (about a minute)
#   RUNS=5    runs per cell in full mode; N=100000 the main N
#   SCALE=0   skip the 10k/1M scaling points; SCALE_RUNS=3 runs per scaling point
#   ONLY=w1,w3 / SYSTEMS=tether,luv   restrict (debugging)
# The tether scripts need the core built (`make`); without it the anchors still
# run and the driver exits 2.
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/driver.py "$@"
