"""W3 cancel with a Trio nursery: N tasks parked on a 1-hour sleep, one more
raises; time from the raise until the nursery has raised with all N
cancelled (each counted in a `finally`)."""
import trio
from common import n_arg, clock, check, result, Boom

N = n_arg()
parked = 0
cleaned = 0
t_raise = None


async def sleeper():
    global parked, cleaned
    parked += 1
    try:
        await trio.sleep(3600)
    finally:
        cleaned += 1


async def raiser():
    global t_raise
    while parked < N:
        await trio.sleep(0)
    t_raise = clock()
    raise Boom()


async def main():
    try:
        async with trio.open_nursery() as nursery:
            for _ in range(N):
                nursery.start_soon(sleeper)
            nursery.start_soon(raiser)
    except* Boom as eg:
        t_caught = clock()
        check(len(eg.exceptions) == 1, f"{len(eg.exceptions)} errors in the group")
    else:
        t_caught = None
    check(t_caught is not None, "nursery did not raise")
    return t_caught - t_raise


elapsed = trio.run(main)
check(parked == N, f"parked={parked}, expected {N}")
check(cleaned == N, f"cleaned={cleaned}, expected {N}")
result("w3", "trio", N, elapsed, "s")
