"""W1 spawn-join with a Trio nursery: N tasks each `await trio.sleep(0)`."""
import trio
from common import n_arg, clock, check, result

N = n_arg()
done = 0


async def task():
    global done
    await trio.sleep(0)
    done += 1


async def main():
    t0 = clock()
    async with trio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(task)
    return clock() - t0


elapsed = trio.run(main)
check(done == N, f"done={done}, expected {N}")
result("w1", "trio", N, elapsed / N * 1e9, "ns_per_task")
