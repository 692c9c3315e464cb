"""W5 memory with asyncio.TaskGroup: RSS per parked task (full GC before both readings)."""
import asyncio
from common import n_arg, rss, fullgc, check, result

N = n_arg()
parked = 0
cleaned = 0


class Stop(Exception):
    pass


async def sleeper():
    global parked, cleaned
    parked += 1
    try:
        await asyncio.sleep(3600)
    finally:
        cleaned += 1


async def main():
    fullgc()
    before = rss()
    after = None
    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(N):
                tg.create_task(sleeper())
            while parked < N:
                await asyncio.sleep(0)
            fullgc()
            after = rss()
            raise Stop()                # cancels the parked tasks
    except* Stop:
        pass
    return after - before


grown = asyncio.run(main())
check(parked == N and cleaned == N, f"parked={parked} cleaned={cleaned}, expected {N}")
result("w5", "asyncio", N, grown / N, "bytes_per_task")
