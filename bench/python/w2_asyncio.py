"""W2 timers with asyncio.TaskGroup: N tasks each sleep their shared delay."""
import asyncio
from common import n_arg, delays, clock, check, result, W2_TOLERANCE

N = n_arg()
DELAYS = delays(N)
done = 0
early = 0


async def task(d):
    global done, early
    start = clock()
    await asyncio.sleep(d)
    if clock() - start < d - W2_TOLERANCE:
        early += 1
    done += 1


async def main():
    t0 = clock()
    async with asyncio.TaskGroup() as tg:
        for ms in DELAYS:
            tg.create_task(task(ms / 1000))
    return clock() - t0


wall = asyncio.run(main())
check(done == N, f"done={done}, expected {N}")
check(early == 0, f"{early} sleeps woke before their delay")
check(wall >= 0.050, "wall time below the 50 ms maximum delay")
result("w2", "asyncio", N, wall - 0.050, "s")
