"""W9 small files with asyncio: N files of 4 KiB read concurrently, each with
`await asyncio.to_thread(Path(p).read_bytes)`, joined with asyncio.gather."""
import asyncio
import pathlib
from common import n_arg, clock, result
from w9_common import paths, check_data

N = n_arg()
PATHS = [pathlib.Path(p) for p in paths(N)]


async def main():
    t0 = clock()
    data = await asyncio.gather(*(asyncio.to_thread(p.read_bytes) for p in PATHS))
    return clock() - t0, data


elapsed, data = asyncio.run(main())
check_data(data, N)
result("w9", "asyncio", N, N / elapsed, "files_per_s")
