// W3 cancel with Node.js, written the structured way with Promise.all and
// AbortController: every task gets an AbortSignal; Promise.all rejects on the
// first error, the handler aborts the rest and waits for every task to settle
// (so each one really unwinds: its `finally` runs), then the group raises.
//
// One AbortController per task, aborted by the group: the textbook single
// shared signal (`{ signal }` passed to all N sleeps) is O(N^2) to set up in
// Node 20 (EventTarget.addEventListener walks the listener list for
// duplicates: ~1 s for 10k tasks, ~6 s for 30k, over a minute for 100k), which
// no one running 100k tasks would keep. See bench/README.md.
'use strict';
const { setTimeout: sleep, setImmediate: yieldToLoop } = require('timers/promises');
const { clock, check, nArg, result, Boom } = require('./common');

const N = nArg();
let parked = 0;
let cleaned = 0;
let tRaise = null;

async function sleeper(signal) {
  parked++;
  try {
    await sleep(3600e3, undefined, { signal });
  } finally {
    cleaned++;
  }
}

async function raiser() {
  while (parked < N) await yieldToLoop();
  tRaise = clock();
  throw new Boom('boom');
}

// withGroup(body): body(spawn) calls spawn(fn) for each task; fn(signal)
async function withGroup(body) {
  const controllers = [];
  const tasks = [];
  const spawn = (fn) => {
    const ac = new AbortController();
    controllers.push(ac);
    tasks.push(fn(ac.signal));
  };
  body(spawn);
  try {
    return await Promise.all(tasks);
  } catch (err) {
    for (const ac of controllers) ac.abort();
    const settled = await Promise.allSettled(tasks);
    const errors = settled.filter((s) => s.status === 'rejected' && s.reason.name !== 'AbortError').map((s) => s.reason);
    throw new AggregateError(errors, 'errors in task group');
  }
}

(async () => {
  let caught = null;
  let tCaught = null;
  try {
    await withGroup((spawn) => {
      for (let i = 0; i < N; i++) spawn(sleeper);
      spawn(raiser);
    });
  } catch (err) {
    tCaught = clock();
    caught = err;
  }
  check(caught instanceof AggregateError, `group raised something else: ${caught}`);
  check(caught.errors.length === 1 && caught.errors[0] instanceof Boom, `group holds ${caught.errors.length} errors`);
  check(parked === N, `parked=${parked}, expected ${N}`);
  check(cleaned === N, `cleaned=${cleaned}, expected ${N}`);
  result('w3', 'node', N, tCaught - tRaise, 's');
})();
