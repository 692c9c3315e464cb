-- bench/cqueues/group.lua: a task group as a cqueues user writes it. cqueues
-- has no cancellation of a coroutine, so a group carries a condition variable
-- and a `cancelled` flag; a cancellable sleep waits on the condition with a
-- timeout and raises CANCEL when woken by a cancel. Each task runs under pcall
-- so that its cleanup (<close> variables, handlers) runs when it unwinds; the
-- first real error cancels the group and is raised once cq:loop() is done.
local cqueues = require("cqueues")
local condition = require("cqueues.condition")

local M = {}
local CANCEL = setmetatable({}, { __tostring = function() return "cancelled" end })
M.CANCEL = CANCEL

function M.new()
  local g = { cq = cqueues.new(), cond = condition.new(), cancelled = false, err = nil }

  function g:cancel()
    if not self.cancelled then
      self.cancelled = true
      self.cond:signal()               -- wakes every waiter
    end
  end

  function g:sleep(seconds)
    if self.cancelled then error(CANCEL, 0) end
    self.cond:wait(seconds)
    if self.cancelled then error(CANCEL, 0) end
  end

  function g:spawn(fn)
    self.cq:wrap(function()
      local ok, err = pcall(fn)
      if not ok and err ~= CANCEL and self.err == nil then
        self.err = err
        self:cancel()
      end
    end)
  end

  -- join: run the loop until every task has finished, then raise the error
  function g:join()
    local ok, err = self.cq:loop()
    if not ok then error("cq:loop: " .. tostring(err), 0) end
    if self.err ~= nil then error(self.err, 0) end
  end

  return g
end

return M
