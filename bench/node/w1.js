// W1 spawn-join with Node.js: N async tasks each yield to the event loop once
// (`await setImmediate()`), joined with Promise.all.
'use strict';
const { setImmediate: yieldToLoop } = require('timers/promises');
const { clock, check, nArg, result } = require('./common');

const N = nArg();
let done = 0;

async function task() {
  await yieldToLoop();
  done++;
}

(async () => {
  const t0 = clock();
  const tasks = [];
  for (let i = 0; i < N; i++) tasks.push(task());
  await Promise.all(tasks);
  const elapsed = clock() - t0;
  check(done === N, `done=${done}, expected ${N}`);
  result('w1', 'node', N, elapsed / N * 1e9, 'ns_per_task');
})();
