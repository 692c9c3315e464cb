-- W10 channel throughput with cqueues: a bounded buffer guarded by two
-- condition variables (not empty, not full), as a cqueues user writes it; at
-- capacity 0 a put also waits until its value was taken (a rendezvous).
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local cqueues = require("cqueues")
local condition = require("cqueues.condition")
local N = C.n()
local CAP = C.capacity()

local q = { buf = {}, first = 1, last = 0, puts = 0, gets = 0, closed = false,
            nonempty = condition.new(), nonfull = condition.new() }
local room = math.max(CAP, 1)

local function put(v)
  while q.last - q.first + 1 >= room do q.nonfull:wait() end
  q.last = q.last + 1
  q.buf[q.last] = v
  q.puts = q.puts + 1
  q.nonempty:signal()
  if CAP == 0 then
    local mine = q.puts
    while q.gets < mine do q.nonfull:wait() end
  end
end

local function get()
  while q.last < q.first do
    if q.closed then return nil end
    q.nonempty:wait()
  end
  local v = q.buf[q.first]
  q.buf[q.first] = nil
  q.first = q.first + 1
  q.gets = q.gets + 1
  q.nonfull:signal()
  return v
end

local count, sum, t0, t1 = 0, 0, 0, 0
local cq = cqueues.new()
cq:wrap(function()
  while true do
    local v = get()
    if v == nil then break end
    count = count + 1; sum = sum + v
  end
  t1 = C.clock()
end)
cq:wrap(function()
  t0 = C.clock()
  for i = 1, N do put(i) end
  q.closed = true
  q.nonempty:signal()
end)
local ok, err = cq:loop()
C.check(ok, "cq:loop: " .. tostring(err))
C.check(count == N and sum == N * (N + 1) // 2, ("received %d values summing to %d, expected %d summing to %d")
  :format(count, sum, N, N * (N + 1) // 2))
C.result(C.w10_name(CAP), "cqueues", N, N / (t1 - t0), "values_per_s")
