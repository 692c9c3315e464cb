"""W1 spawn-join with asyncio.TaskGroup: N tasks each `await asyncio.sleep(0)`."""
import asyncio
from common import n_arg, clock, check, result

N = n_arg()
done = 0


async def task():
    global done
    await asyncio.sleep(0)
    done += 1


async def main():
    t0 = clock()
    async with asyncio.TaskGroup() as tg:
        for _ in range(N):
            tg.create_task(task())
    return clock() - t0


elapsed = asyncio.run(main())
check(done == N, f"done={done}, expected {N}")
result("w1", "asyncio", N, elapsed / N * 1e9, "ns_per_task")
