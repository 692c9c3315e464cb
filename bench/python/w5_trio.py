"""W5 memory with a Trio nursery: RSS per parked task (full GC before both readings)."""
import trio
from common import n_arg, rss, fullgc, check, result

N = n_arg()
parked = 0
cleaned = 0


async def sleeper():
    global parked, cleaned
    parked += 1
    try:
        await trio.sleep(3600)
    finally:
        cleaned += 1


async def main():
    fullgc()
    before = rss()
    async with trio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(sleeper)
        while parked < N:
            await trio.sleep(0)
        fullgc()
        after = rss()
        nursery.cancel_scope.cancel()   # cancels the parked tasks
    return after - before


grown = trio.run(main)
check(parked == N and cleaned == N, f"parked={parked} cleaned={cleaned}, expected {N}")
result("w5", "trio", N, grown / N, "bytes_per_task")
