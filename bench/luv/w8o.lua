-- W8 overhead, hand-written luv: N uv.new_work queue calls of a trivial
-- function, one after the other (the after-work callback queues the next).
local here = (arg[0]:match("^(.*)/") or ".")
local C = dofile(here .. "/../lib/common.lua")
local uv = require("luv")
local N = C.n()

local sum, i, warm, t0 = 0, 0, 10, nil
local work
work = uv.new_work(function(x) return x + 1 end, function(r)
  if warm > 0 then                               -- the thread states exist
    warm = warm - 1
    if warm == 0 then
      t0 = C.clock()
      work:queue(1)
    else
      work:queue(0)
    end
    return
  end
  sum = sum + r
  i = i + 1
  if i < N then work:queue(i + 1) end
end)
work:queue(0)
uv.run()
local elapsed = C.clock() - t0

C.check(i == N, ("i=%d, expected %d"):format(i, N))
C.check(sum == N * (N + 1) // 2 + N, ("sum=%d"):format(sum))
C.result("w8o", "luv", N, elapsed / N * 1e9, "ns_per_call")
