// W5 memory with Node.js: RSS per parked (abortable) task; full GC before both
// readings (node --expose-gc). One AbortController per task, as in w3.js.
'use strict';
const { setTimeout: sleep, setImmediate: yieldToLoop } = require('timers/promises');
const { check, nArg, rss, fullgc, result } = require('./common');

const N = nArg();
let parked = 0;
let cleaned = 0;

async function sleeper(signal) {
  parked++;
  try {
    await sleep(3600e3, undefined, { signal });
  } finally {
    cleaned++;
  }
}

(async () => {
  fullgc();
  const before = rss();
  const controllers = [];
  const tasks = [];
  for (let i = 0; i < N; i++) {
    const ac = new AbortController();
    controllers.push(ac);
    tasks.push(sleeper(ac.signal));
  }
  while (parked < N) await yieldToLoop();
  fullgc();
  const after = rss();
  for (const ac of controllers) ac.abort();       // cancels the parked tasks
  await Promise.allSettled(tasks);
  check(parked === N && cleaned === N, `parked=${parked} cleaned=${cleaned}, expected ${N}`);
  result('w5', 'node', N, (after - before) / N, 'bytes_per_task');
})();
