"""W7 processes with Trio: N `true` processes, at most 8 at once
(trio.CapacityLimiter), each with trio.run_process capturing stdout and stderr,
exit status checked."""
import os
import sys

import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

N = C.n_arg()


async def main():
    lim = trio.CapacityLimiter(8)
    ok = 0

    async def one():
        nonlocal ok
        async with lim:
            r = await trio.run_process(["true"], stdin=b"", capture_stdout=True,
                                       capture_stderr=True, check=False)
            if r.returncode == 0 and r.stdout == b"" and r.stderr == b"":
                ok += 1

    t0 = C.clock()
    async with trio.open_nursery() as n:
        for _ in range(N):
            n.start_soon(one)
    return ok, C.clock() - t0


ok, elapsed = trio.run(main)
C.check(ok == N, f"ok={ok}, expected {N}")
C.result("w7", "trio", N, N / elapsed, "processes_per_s")
