// Helpers shared by the Node.js benchmark scripts.
'use strict';
const fs = require('fs');
const { performance } = require('perf_hooks');

const clock = () => performance.now() / 1000;   // monotonic seconds
const W2_TOLERANCE = 0.001;                      // see bench/lib/common.lua

function fail(msg) {
  process.stderr.write(`FAIL: ${msg}\n`);
  process.exit(1);
}
function check(cond, msg) { if (!cond) fail(msg); }

function nArg() {
  const n = process.argv[2] === undefined ? 100000 : Number(process.argv[2]);
  if (!Number.isInteger(n) || n < 1) fail(`bad N: ${process.argv[2]}`);
  return n;
}

function delays(n) {
  const path = process.argv[3];
  if (!path) fail('W2 needs the delay file as second argument');
  const d = fs.readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').slice(0, n).map(Number);
  if (d.length !== n) fail(`delay file has ${d.length} entries, need ${n}`);
  return d;
}

function rss() {
  const m = fs.readFileSync('/proc/self/status', 'utf8').match(/^VmRSS:\s*(\d+)\s*kB/m);
  if (!m) throw new Error('VmRSS not found');
  return Number(m[1]) * 1024;
}

function fullgc() {
  if (typeof global.gc !== 'function') fail('run node with --expose-gc');
  global.gc(); global.gc();
}

function result(work, system, n, value, unit) {
  process.stdout.write(`RESULT ${work} ${system} n=${n} value=${Number(value.toPrecision(6))} unit=${unit}\n`);
}

class Boom extends Error {}

module.exports = { clock, W2_TOLERANCE, fail, check, nArg, delays, rss, fullgc, result, Boom };
