-- W7 processes, hand-written over luv: uv.spawn with stdout and stderr pipes read to
-- EOF, at most 8 children at once; the next child starts when one is done (it exited
-- and both pipes reached EOF).
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local uv = require("luv")
local N = C.n()
local LIMIT = 8

local started, ok, running = 0, 0, 0
local start_one

local function finish(st)
  st.left = st.left - 1
  if st.left > 0 then return end
  if st.code == 0 and st.out == "" and st.err == "" then ok = ok + 1 end
  running = running - 1
  if started < N then start_one() end
end

local function reader(st, pipe, field)
  pipe:read_start(function(err, data)
    assert(not err, err)
    if data then
      st[field] = st[field] .. data
    else
      pipe:close()
      finish(st)
    end
  end)
end

function start_one()
  started = started + 1
  running = running + 1
  local out, err = uv.new_pipe(false), uv.new_pipe(false)
  local st = { left = 3, out = "", err = "" }
  local handle
  handle = uv.spawn("true", { stdio = { nil, out, err } }, function(code)
    st.code = code
    handle:close()
    finish(st)
  end)
  assert(handle, "spawn failed")
  reader(st, out, "out")
  reader(st, err, "err")
end

local t0 = C.clock()
for _ = 1, math.min(LIMIT, N) do start_one() end
uv.run()
local elapsed = C.clock() - t0

C.check(ok == N, ("ok=%d, expected %d"):format(ok, N))
C.result("w7", "luv", N, N / elapsed, "processes_per_s")
