"""W7 processes with asyncio: N `true` processes, at most 8 at once
(asyncio.Semaphore), each with create_subprocess_exec, stdout and stderr piped
and read by communicate(), exit status checked."""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

N = C.n_arg()


async def main():
    sem = asyncio.Semaphore(8)
    ok = 0

    async def one():
        nonlocal ok
        async with sem:
            p = await asyncio.create_subprocess_exec(
                "true", stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await p.communicate()
            if p.returncode == 0 and out == b"" and err == b"":
                ok += 1

    t0 = C.clock()
    async with asyncio.TaskGroup() as tg:
        for _ in range(N):
            tg.create_task(one())
    return ok, C.clock() - t0


ok, elapsed = asyncio.run(main())
C.check(ok == N, f"ok={ok}, expected {N}")
C.result("w7", "asyncio", N, N / elapsed, "processes_per_s")
