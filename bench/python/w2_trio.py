"""W2 timers with a Trio nursery: N tasks each sleep their shared delay."""
import trio
from common import n_arg, delays, clock, check, result, W2_TOLERANCE

N = n_arg()
DELAYS = delays(N)
done = 0
early = 0


async def task(d):
    global done, early
    start = clock()
    await trio.sleep(d)
    if clock() - start < d - W2_TOLERANCE:
        early += 1
    done += 1


async def main():
    t0 = clock()
    async with trio.open_nursery() as nursery:
        for ms in DELAYS:
            nursery.start_soon(task, ms / 1000)
    return clock() - t0


wall = trio.run(main)
check(done == N, f"done={done}, expected {N}")
check(early == 0, f"{early} sleeps woke before their delay")
check(wall >= 0.050, "wall time below the 50 ms maximum delay")
result("w2", "trio", N, wall - 0.050, "s")
