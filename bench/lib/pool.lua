-- bench/lib/pool.lua: what the W8 (thread offload) and W9 (small files) scripts
-- share: the CPU-bound job, its check, and the check of the files read.
-- Loaded with dofile, as common.lua.
local M = {}

-- W8: one job is about 10 ms of pure Lua on the reference machine (AMD EPYC,
-- bench/README.md). It has no upvalues, so every system can ship it to a
-- thread (tether.thread.run, luv's uv.new_work dump it).
M.W8_ITERS = 1000000
function M.w8_job(n)
  local s = 0
  for i = 1, n do s = (s + i * i) % 1000003 end
  return s
end

-- Job i runs w8_job(W8_ITERS + i): every result differs, so each is checked
-- to belong to its job (the first and the last recomputed here, every one
-- present and distinct).
function M.w8_check(C, res, n)
  local seen = {}
  for i = 1, n do
    C.check(math.type(res[i]) == "integer", ("job %d: no result"):format(i))
    seen[res[i]] = (seen[res[i]] or 0) + 1
  end
  C.check(res[1] == M.w8_job(M.W8_ITERS + 1), "job 1: wrong result")
  C.check(res[n] == M.w8_job(M.W8_ITERS + n), ("job %d: wrong result"):format(n))
end

-- W9: the files the driver made (bench/driver.py, make_w9_files): file i is
-- DIR/NNNNN.dat, 4096 bytes, starting with "file i\n".
M.W9_SIZE = 4096
function M.w9_paths(C, n)
  local dir = arg[2] or C.fail("W9 needs the directory of files as second argument")
  local paths = {}
  for i = 1, n do paths[i] = ("%s/%05d.dat"):format(dir, i) end
  return paths
end

function M.w9_check(C, data, n)
  for i = 1, n do
    local d = data[i]
    C.check(type(d) == "string" and #d == M.W9_SIZE, ("file %d: %s bytes"):format(i, d and #d or "no"))
    C.check(d:sub(1, #("file " .. i .. "\n")) == "file " .. i .. "\n", ("file %d: wrong contents"):format(i))
  end
end

return M
