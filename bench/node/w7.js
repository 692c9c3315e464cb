// W7 processes with Node.js: N `true` processes, at most 8 at once, each with
// child_process.execFile (stdout and stderr captured), exit status checked.
'use strict';
const { execFile } = require('child_process');
const C = require('./common');

const N = C.nArg();
const LIMIT = 8;

function one() {
  return new Promise((resolve) => {
    execFile('true', [], (err, stdout, stderr) => {
      resolve(!err && stdout === '' && stderr === '');
    });
  });
}

async function main() {
  let next = 0;
  let ok = 0;
  const t0 = C.clock();
  async function worker() {
    while (next < N) {
      next += 1;
      if (await one()) ok += 1;
    }
  }
  const workers = [];
  for (let i = 0; i < Math.min(LIMIT, N); i++) workers.push(worker());
  await Promise.all(workers);
  const elapsed = C.clock() - t0;
  C.check(ok === N, `ok=${ok}, expected ${N}`);
  C.result('w7', 'node', N, N / elapsed, 'processes_per_s');
}

main();
