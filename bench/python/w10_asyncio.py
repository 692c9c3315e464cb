"""W10 channel throughput with asyncio.Queue: one producer puts 1..N, one
consumer sums them. asyncio has no rendezvous queue (maxsize=0 means
unbounded), so capacity 0 is a Queue(maxsize=1) whose producer waits for
q.join() after each put: the value was taken before the next one is sent."""
import asyncio
import sys
from common import n_arg, clock, check, result

N = n_arg()
CAP = int(sys.argv[2])


async def main():
    q = asyncio.Queue(maxsize=max(CAP, 1))
    count = 0
    total = 0
    t = {}

    async def consumer():
        nonlocal count, total
        while True:
            v = await q.get()
            q.task_done()
            if v is None:
                break
            count += 1
            total += v
        t["t1"] = clock()

    async def producer():
        t["t0"] = clock()
        for i in range(1, N + 1):
            await q.put(i)
            if CAP == 0:
                await q.join()
        await q.put(None)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(consumer())
        tg.create_task(producer())
    return count, total, t["t1"] - t["t0"]


count, total, dt = asyncio.run(main())
check(count == N and total == N * (N + 1) // 2, f"received {count} values summing to {total}")
result(f"w10_{CAP}", "asyncio", N, N / dt, "values_per_s")
