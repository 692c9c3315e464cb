"""W3 cancel with asyncio.TaskGroup: N tasks parked on a 1-hour sleep, one more
raises; time from the raise until the TaskGroup has raised with all N
cancelled (each counted in a `finally`)."""
import asyncio
from common import n_arg, clock, check, result, Boom

N = n_arg()
parked = 0
cleaned = 0
t_raise = None


async def sleeper():
    global parked, cleaned
    parked += 1
    try:
        await asyncio.sleep(3600)
    finally:
        cleaned += 1


async def raiser():
    global t_raise
    while parked < N:
        await asyncio.sleep(0)
    t_raise = clock()
    raise Boom()


async def main():
    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(N):
                tg.create_task(sleeper())
            tg.create_task(raiser())
    except* Boom as eg:
        t_caught = clock()
        check(len(eg.exceptions) == 1, f"{len(eg.exceptions)} errors in the group")
    else:
        t_caught = None
    check(t_caught is not None, "TaskGroup did not raise")
    return t_caught - t_raise


elapsed = asyncio.run(main())
check(parked == N, f"parked={parked}, expected {N}")
check(cleaned == N, f"cleaned={cleaned}, expected {N}")
result("w3", "asyncio", N, elapsed, "s")
