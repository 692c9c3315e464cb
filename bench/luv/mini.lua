-- bench/luv/mini.lua: the coroutine scheduler a Lua programmer writes by hand
-- over luv today, without a library: a task is a coroutine, sleep() is a luv
-- timer whose callback resumes it, a group counts its live tasks and wakes the
-- joiner when the count drops to zero, and a failure cancels the siblings by
-- stopping their timers and resuming them with a CANCEL marker (so every
-- cancelled task really unwinds: pcall handlers and <close> variables run).
local uv = require("luv")

local M = {}
local CANCEL = setmetatable({}, { __tostring = function() return "cancelled" end })
M.CANCEL = CANCEL

local current            -- the task record of the running coroutine

local function resume(task, ...)
  local prev = current
  current = task
  local ok, err = coroutine.resume(task.co, ...)
  current = prev
  if not ok then error(err, 0) end   -- only the scheduler's own bugs get here
end

M.resume = resume
function M.current() return current end

function M.sleep(seconds)
  local task = current
  local timer = uv.new_timer()
  task.timer = timer
  -- libuv's loop clock is cached at the start of the loop iteration; without
  -- this refresh a timer started late in a long iteration fires early (the
  -- naive version fails W2's "slept at least its delay" check by tens of ms)
  if seconds > 0 then uv.update_time() end
  timer:start(math.floor(seconds * 1000), 0, function()
    timer:close()
    task.timer = nil
    resume(task)
  end)
  if coroutine.yield() == CANCEL then error(CANCEL, 0) end
end

local function cancel_all(g)
  for task in pairs(g.tasks) do
    if task.timer then
      task.timer:stop(); task.timer:close(); task.timer = nil
      resume(task, CANCEL)
    end
  end
end

local Group = {}
Group.__index = Group

function Group:spawn(fn)
  local g = self
  local task = {}
  task.co = coroutine.create(function()
    local ok, err = pcall(fn)
    g.tasks[task] = nil
    g.pending = g.pending - 1
    if not ok and err ~= CANCEL and g.err == nil then
      g.err = err
      cancel_all(g)
    end
    if g.pending == 0 and g.waiter then
      local w = g.waiter
      g.waiter = nil
      resume(w)
    end
  end)
  g.tasks[task] = true
  g.pending = g.pending + 1
  resume(task)                      -- start it right away
  return task
end

-- with_group(body): run body(g) in the calling task, wait for every task, then
-- raise the first error (if any)
function M.with_group(body)
  local g = setmetatable({ tasks = {}, pending = 0 }, Group)
  body(g)
  if g.pending > 0 then
    g.waiter = current
    coroutine.yield()
  end
  if g.err ~= nil then error(g.err, 0) end
end

-- run(main): main runs as the root task; returns once the loop is empty
function M.run(main)
  local err
  local root = {}
  root.co = coroutine.create(function()
    local ok, e = pcall(main)
    if not ok then err = e end
  end)
  resume(root)
  uv.run()
  if err ~= nil then error(err, 0) end
end

return M
