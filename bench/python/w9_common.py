"""W9 helpers for the Python scripts: the paths of the driver's files, the check."""
import sys
from common import fail, check


def paths(n):
    if len(sys.argv) < 3:
        fail("W9 needs the directory of files as second argument")
    return [f"{sys.argv[2]}/{i:05d}.dat" for i in range(1, n + 1)]


def check_data(data, n):
    for i in range(1, n + 1):
        d = data[i - 1]
        check(len(d) == 4096, f"file {i}: {len(d)} bytes")
        head = f"file {i}\n".encode()
        check(d[:len(head)] == head, f"file {i}: wrong contents")
