-- W9 small files, hand-written luv: for each file the chain a luv programmer
-- writes, uv.fs_open -> uv.fs_fstat -> uv.fs_read -> uv.fs_close, all N
-- chains started at once.
local here = (arg[0]:match("^(.*)/") or ".")
local C = dofile(here .. "/../lib/common.lua")
local P = dofile(here .. "/../lib/pool.lua")
local uv = require("luv")
local N = C.n()
local paths = P.w9_paths(C, N)

local data, left = {}, N
local function read(i)
  uv.fs_open(paths[i], "r", 0, function(err, fd)
    assert(not err, err)
    uv.fs_fstat(fd, function(err2, st)
      assert(not err2, err2)
      uv.fs_read(fd, st.size, 0, function(err3, bytes)
        assert(not err3, err3)
        uv.fs_close(fd, function()
          data[i] = bytes
          left = left - 1
        end)
      end)
    end)
  end)
end

local t0 = C.clock()
for i = 1, N do read(i) end
uv.run()
local elapsed = C.clock() - t0

C.check(left == 0, ("%d files not read"):format(left))
P.w9_check(C, data, N)
C.result("w9", "luv", N, N / elapsed, "files_per_s")
