// W2 timers with Node.js: N async tasks each `await setTimeout(delay)`, Promise.all.
'use strict';
const { setTimeout: sleep } = require('timers/promises');
const { clock, W2_TOLERANCE, check, nArg, delays, result } = require('./common');

const N = nArg();
const DELAYS = delays(N);
let done = 0;
let early = 0;

async function task(ms) {
  const start = clock();
  await sleep(ms);
  if (clock() - start < ms / 1000 - W2_TOLERANCE) early++;
  done++;
}

(async () => {
  const t0 = clock();
  const tasks = [];
  for (let i = 0; i < N; i++) tasks.push(task(DELAYS[i]));
  await Promise.all(tasks);
  const wall = clock() - t0;
  check(done === N, `done=${done}, expected ${N}`);
  check(early === 0, `${early} sleeps woke before their delay`);
  check(wall >= 0.050, 'wall time below the 50 ms maximum delay');
  result('w2', 'node', N, wall - 0.050, 's');
})();
