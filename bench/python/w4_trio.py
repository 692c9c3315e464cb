"""W4 TCP echo with Trio: serve_tcp (a task per connection) started in a
nursery, and C client tasks; each client does R round trips of a 64-byte
message (send_all, receive until 64 bytes, compare every byte).
usage: w4_trio.py C [R]  -> round trips per second"""
import sys
import trio
from common import n_arg, clock, check, fail, result

NC = n_arg()
R = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
ok_rt = 0


async def echo(stream):
    async with stream:
        while True:
            d = await stream.receive_some(65536)
            if not d:
                return
            await stream.send_all(d)


async def read_exactly(stream, n):
    buf = b""
    while len(buf) < n:
        d = await stream.receive_some(n - len(buf))
        if not d:
            fail("EOF before the echo")
        buf += d
    return buf


async def client(i, port):
    global ok_rt
    msg = (f"client {i:06d} " + "x" * 50).encode()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        for _ in range(R):
            await stream.send_all(msg)
            got = await read_exactly(stream, 64)
            if got != msg:
                fail(f"client {i}: echo mismatch")
            ok_rt += 1


async def main():
    async with trio.open_nursery() as server_nursery:
        listeners = await server_nursery.start(
            lambda task_status: trio.serve_tcp(echo, 0, host="127.0.0.1", backlog=4096,
                                               task_status=task_status))
        port = listeners[0].socket.getsockname()[1]
        t0 = clock()
        async with trio.open_nursery() as nursery:
            for i in range(NC):
                nursery.start_soon(client, i, port)
        t1 = clock()
        server_nursery.cancel_scope.cancel()
    return t1 - t0


elapsed = trio.run(main)
check(ok_rt == NC * R, f"round trips: {ok_rt}, expected {NC * R}")
result("w4", "trio", NC, ok_rt / elapsed, "rt_per_s")
