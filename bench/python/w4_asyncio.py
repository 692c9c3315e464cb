"""W4 TCP echo with asyncio streams: start_server (a task per connection) and
C client tasks in one process on 127.0.0.1; each client does R round trips of
a 64-byte message (write + drain, readexactly(64), compare every byte).
usage: w4_asyncio.py C [R]  -> round trips per second"""
import asyncio
import sys
from common import n_arg, clock, check, fail, result

NC = n_arg()
R = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
ok_rt = 0


async def echo(reader, writer):
    while True:
        d = await reader.read(65536)
        if not d:
            break
        writer.write(d)
        await writer.drain()
    writer.close()


async def client(i, port):
    global ok_rt
    msg = (f"client {i:06d} " + "x" * 50).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(R):
        writer.write(msg)
        await writer.drain()
        got = await reader.readexactly(64)
        if got != msg:
            fail(f"client {i}: echo mismatch")
        ok_rt += 1
    writer.close()
    await writer.wait_closed()


async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    t0 = clock()
    async with asyncio.TaskGroup() as tg:
        for i in range(NC):
            tg.create_task(client(i, port))
    t1 = clock()
    server.close()
    await server.wait_closed()
    return t1 - t0


elapsed = asyncio.run(main())
check(ok_rt == NC * R, f"round trips: {ok_rt}, expected {NC * R}")
result("w4", "asyncio", NC, ok_rt / elapsed, "rt_per_s")
