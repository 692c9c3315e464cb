-- W9 small files with tether: N files of 4 KiB read concurrently, one task
-- each, with tether.fs.read_file (one pool job per file: open, fstat, read, close).
local here = (arg[0]:match("^(.*)/") or ".")
local C = dofile(here .. "/../lib/common.lua")
local P = dofile(here .. "/../lib/pool.lua")
local tether = require("tether")
local N = C.n()
local paths = P.w9_paths(C, N)

local data, elapsed = {}, nil
tether.run(function()
  local read_file = tether.fs.read_file
  local t0 = C.clock()
  tether.with_group(function(g)
    for i = 1, N do g:spawn(function() data[i] = read_file(paths[i]) end) end
  end)
  elapsed = C.clock() - t0
end)

P.w9_check(C, data, N)
C.result("w9", "tether", N, N / elapsed, "files_per_s")
