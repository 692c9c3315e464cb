// W10 channel throughput with Node.js: a hand-written async queue (a bounded
// buffer, and FIFOs of waiting getters and putters as promise resolvers); a
// send hands its value straight to a waiting getter; at capacity 0 a send
// waits until a getter took its value. One producer, one consumer.
'use strict';
const { check, nArg, clock, result, fail } = require('./common');

const N = nArg();
const CAP = Number(process.argv[3]);
if (!Number.isInteger(CAP) || CAP < 0) fail(`bad capacity: ${process.argv[3]}`);

class Fifo {
  constructor() { this.items = []; this.head = 0; }
  get length() { return this.items.length - this.head; }
  push(x) { this.items.push(x); }
  shift() {
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head); this.head = 0;
    }
    return x;
  }
}

class Channel {
  constructor(cap) { this.cap = cap; this.buf = new Fifo(); this.getters = new Fifo(); this.putters = new Fifo(); this.closed = false; }
  send(v) {
    if (this.getters.length) { this.getters.shift()(v); return Promise.resolve(); }
    if (this.buf.length < this.cap) { this.buf.push(v); return Promise.resolve(); }
    return new Promise((resolve) => this.putters.push([v, resolve]));
  }
  receive() {
    if (this.buf.length) {
      const v = this.buf.shift();
      if (this.putters.length) { const [pv, res] = this.putters.shift(); this.buf.push(pv); res(); }
      return Promise.resolve(v);
    }
    if (this.putters.length) { const [pv, res] = this.putters.shift(); res(); return Promise.resolve(pv); }
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => this.getters.push(resolve));
  }
  close() { this.closed = true; while (this.getters.length) this.getters.shift()(undefined); }
}

(async () => {
  const ch = new Channel(CAP);
  let count = 0, sum = 0, t0 = 0, t1 = 0;
  const consumer = (async () => {
    for (;;) {
      const v = await ch.receive();
      if (v === undefined) break;
      count++; sum += v;
    }
    t1 = clock();
  })();
  const producer = (async () => {
    t0 = clock();
    for (let i = 1; i <= N; i++) await ch.send(i);
    ch.close();
  })();
  await Promise.all([consumer, producer]);
  check(count === N && sum === N * (N + 1) / 2, `received ${count} values summing to ${sum}`);
  result(`w10_${CAP}`, 'node', N, N / (t1 - t0), 'values_per_s');
})();
