// W9 small files with Node.js: N files of 4 KiB read concurrently with
// fs.promises.readFile, joined with Promise.all.
'use strict';
const fsp = require('fs').promises;
const { clock, check, fail, nArg, result } = require('./common');

const N = nArg();
const dir = process.argv[3] || fail('W9 needs the directory of files as second argument');
const paths = [];
for (let i = 1; i <= N; i++) paths.push(`${dir}/${String(i).padStart(5, '0')}.dat`);

(async () => {
  const t0 = clock();
  const data = await Promise.all(paths.map((p) => fsp.readFile(p)));
  const elapsed = clock() - t0;
  for (let i = 1; i <= N; i++) {
    const d = data[i - 1];
    check(d.length === 4096, `file ${i}: ${d.length} bytes`);
    check(d.subarray(0, `file ${i}\n`.length).toString() === `file ${i}\n`, `file ${i}: wrong contents`);
  }
  result('w9', 'node', N, N / elapsed, 'files_per_s');
})();
