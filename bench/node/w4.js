// W4 TCP echo with Node.js: net.createServer echoing each 'data' chunk, and C
// async clients in one process on 127.0.0.1; each client does R round trips
// of a 64-byte message (write, await 64 bytes, compare every byte).
// usage: node w4.js C [R]  -> round trips per second
'use strict';
const net = require('net');
const { clock, check, fail, nArg, result } = require('./common');

const NC = nArg();
const R = process.argv[3] === undefined ? 1000 : Number(process.argv[3]);
let okRt = 0;

const server = net.createServer({ noDelay: true }, (s) => {
  s.setNoDelay(true);
  s.on('data', (d) => s.write(d));
  s.on('error', () => {});
});

// read exactly n bytes: buffer 'data' chunks, resolve once n are there
function reader(sock) {
  let chunks = [], have = 0, want = 0, wake = null;
  sock.on('data', (d) => {
    chunks.push(d); have += d.length;
    if (wake && have >= want) { const w = wake; wake = null; w(); }
  });
  return async function readExactly(n) {
    if (have < n) { want = n; await new Promise((res) => { wake = res; }); }
    const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    chunks = rest.length ? [rest] : []; have = rest.length;
    return out;
  };
}

async function client(i, port) {
  const msg = Buffer.from(`client ${String(i).padStart(6, '0')} ` + 'x'.repeat(50));
  const sock = net.connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
  sock.setNoDelay(true);
  const readExactly = reader(sock);
  for (let r = 0; r < R; r++) {
    sock.write(msg);
    const got = await readExactly(64);
    if (!got.equals(msg)) fail(`client ${i}: echo mismatch`);
    okRt++;
  }
  sock.destroy();
}

server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, async () => {
  const port = server.address().port;
  const t0 = clock();
  const cs = [];
  for (let i = 0; i < NC; i++) cs.push(client(i, port));
  await Promise.all(cs);
  const t1 = clock();
  server.close();
  check(okRt === NC * R, `round trips: ${okRt}, expected ${NC * R}`);
  result('w4', 'node', NC, okRt / (t1 - t0), 'rt_per_s');
});
