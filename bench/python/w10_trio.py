"""W10 channel throughput with Trio memory channels: one producer sends 1..N
through trio.open_memory_channel(capacity), one consumer sums them."""
import sys
import trio
from common import n_arg, clock, check, result

N = n_arg()
CAP = int(sys.argv[2])


async def main():
    send, recv = trio.open_memory_channel(CAP)
    count = 0
    total = 0
    t = {}

    async def consumer():
        nonlocal count, total
        async with recv:
            async for v in recv:
                count += 1
                total += v
        t["t1"] = clock()

    async def producer():
        t["t0"] = clock()
        async with send:
            for i in range(1, N + 1):
                await send.send(i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        nursery.start_soon(producer)
    return count, total, t["t1"] - t["t0"]


count, total, dt = trio.run(main)
check(count == N and total == N * (N + 1) // 2, f"received {count} values summing to {total}")
result(f"w10_{CAP}", "trio", N, N / dt, "values_per_s")
