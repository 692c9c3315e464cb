-- bench/luv/queue.lua: the bounded queue a Lua programmer writes by hand for
-- the coroutines of mini.lua: a ring buffer, a FIFO of waiting getters and
-- one of waiting putters (each with its value); a put hands its value
-- straight to a waiting getter by resuming it, a get takes a waiting
-- putter's value and resumes it. Capacity 0: every put waits for a getter.
-- Usage: local Q = dofile(".../queue.lua")(S)   with S the loaded mini.lua
return function(S)
local Q = {}
Q.__index = Q

local function fifo() return { first = 1, last = 0 } end
local function fpush(f, x) f.last = f.last + 1; f[f.last] = x end
local function fpop(f)
  if f.first > f.last then return nil end
  local x = f[f.first]
  f[f.first] = nil
  f.first = f.first + 1
  return x
end

function Q.new(capacity)
  return setmetatable({ cap = capacity, buf = fifo(), n = 0, getters = fifo(), putters = fifo(),
                        closed = false }, Q)
end

function Q:put(v)
  local g = fpop(self.getters)
  if g then return S.resume(g, v) end          -- a getter waits: hand it over
  if self.n < self.cap then
    fpush(self.buf, v)
    self.n = self.n + 1
    return
  end
  fpush(self.putters, { task = S.current(), value = v })
  coroutine.yield()                            -- resumed by the getter that took it
end

function Q:get()
  if self.n > 0 then
    local v = fpop(self.buf)
    self.n = self.n - 1
    local p = fpop(self.putters)
    if p then
      fpush(self.buf, p.value)
      self.n = self.n + 1
      S.resume(p.task)
    end
    return v
  end
  local p = fpop(self.putters)
  if p then
    S.resume(p.task)
    return p.value
  end
  if self.closed then return nil end
  fpush(self.getters, S.current())
  return coroutine.yield()                     -- a value, or nil at close
end

function Q:close()
  self.closed = true
  local g = fpop(self.getters)
  while g do
    S.resume(g, nil)
    g = fpop(self.getters)
  end
end

return Q
end
