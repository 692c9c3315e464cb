"""W9 small files with Trio: N files of 4 KiB read concurrently in a nursery,
each with `await trio.Path(p).read_bytes()` (Trio runs it in a worker thread)."""
import trio
from common import n_arg, clock, result
from w9_common import paths, check_data

N = n_arg()
PATHS = paths(N)
data = [None] * N


async def read(i):
    data[i] = await trio.Path(PATHS[i]).read_bytes()


async def main():
    t0 = clock()
    async with trio.open_nursery() as nursery:
        for i in range(N):
            nursery.start_soon(read, i)
    return clock() - t0


elapsed = trio.run(main)
check_data(data, N)
result("w9", "trio", N, N / elapsed, "files_per_s")
