-- spec/stress/ledger.lua: the stress test's own account of every error it raises and where each one ended up.
--
-- The core is not trusted here: the test gives every error it raises an
-- identity, writes it down when it raises it, and writes down where it
-- surfaced again: in an ErrorGroup that reached the top of the tree
-- ("reported"), or in the test's own code ("caught": a pcall that decided
-- to drop it, a catch handler, a cleanup that replaced it).  At the end
-- every identity must have surfaced exactly once, and nothing unknown may
-- have surfaced at all.
--
-- Identities:
--   strings        "<<E17>> ..." (the id is parsed back, so a position prefix
--                   added by error(msg, 1) does not matter)
--   tables          a field `lid` holding the id, and the very same table
--                   must come back (rawequal): nothing rewritten
--   nil and false   cannot carry an id: they are counted per task group, by
--                   the name of the ErrorGroup that holds them directly
local M = {}
M.__index = M

local GROUP_MSG = "^errors in task group '(.*)'$"
M.HANDLER_MSG = "errors raised while handling errors"

function M.new(tether)
  return setmetatable({
    tether = tether,
    next_id = 0,
    ids = {},        -- id -> { kind, value, parent = expected ErrorGroup message or nil, seen = {} }
    nils = {},       -- group name -> { raised = n, seen = n }   (nil errors)
    falses = {},     -- the same for false
    raised = 0,      -- every error raised by the test (all kinds)
    reported = 0,    -- ... of which found at the top
    caught = 0,      -- ... of which caught by the test's own code
    violations = {},
  }, M)
end

local function safe(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then
    if #s > 300 then s = s:sub(1, 300) .. "..." end
    return s
  end
  return "<" .. type(v) .. ">"
end
M.safe = safe

function M:violation(fmt, ...)
  local msg = select("#", ...) > 0 and fmt:format(...) or fmt
  self.violations[#self.violations + 1] = msg
end

function M:new_id()
  self.next_id = self.next_id + 1
  return self.next_id
end

-- Write down that the test raises `value` (id `id`); `parent` is the message
-- of the ErrorGroup expected to hold it directly if it reaches the top.
function M:raise(id, value, kind, parent)
  self.ids[id] = { kind = kind, value = value, parent = parent, seen = {} }
  self.raised = self.raised + 1
end

local function counter(t, group)
  local c = t[group]
  if not c then
    c = { raised = 0, seen = 0 }
    t[group] = c
  end
  return c
end

-- nil / false raised by code whose errors go to the group named `group`.
function M:raise_nil(group)
  counter(self.nils, group).raised = counter(self.nils, group).raised + 1
  self.raised = self.raised + 1
end

function M:raise_false(group)
  counter(self.falses, group).raised = counter(self.falses, group).raised + 1
  self.raised = self.raised + 1
end

-- A TimeoutError raised by tether.fail_after, adopted by the test: it gets
-- an id like the test's own errors.
function M:adopt(value, kind, parent)
  local id = self:new_id()
  rawset(value, "lid", id)
  self:raise(id, value, kind, parent)
  return id
end

-- The id of a leaf, or nil when it is not one of ours.
function M:id_of(e)
  if type(e) == "string" then
    local id = tonumber(e:match("<<E(%d+)>>"))
    return id
  elseif type(e) == "table" then
    local id = rawget(e, "lid")
    if math.type(id) == "integer" and self.ids[id] and rawequal(self.ids[id].value, e) then
      return id
    end
  end
  return nil
end

-- One leaf surfaced: `how` is "reported" or "caught"; `parent` is the
-- message of the ErrorGroup holding it directly (nil for a naked error);
-- `group` is the group a naked nil/false is attributed to.
function M:leaf(e, how, parent, group, where, cancel_ok)
  local tether = self.tether
  if tether.Cancelled:is(e) then
    if parent ~= nil and not cancel_ok then
      self:violation("a Cancelled (%s) was put into an ErrorGroup ('%s') %s", safe(e.reason), safe(parent), where)
    end
    return
  end
  if how == "reported" then self.reported = self.reported + 1 else self.caught = self.caught + 1 end
  if e == nil or e == false then
    local g = parent and parent:match(GROUP_MSG) or (parent == nil and group) or nil
    if not g then
      self:violation("a %s error surfaced directly inside ErrorGroup '%s', not a task group's %s",
        tostring(e), safe(parent), where)
      return
    end
    local c = counter(e == nil and self.nils or self.falses, g)
    c.seen = c.seen + 1
    return
  end
  local id = self:id_of(e)
  if not id or not self.ids[id] then
    self:violation("an error the test never raised surfaced (%s): %s %s", type(e), safe(e), where)
    return
  end
  local rec = self.ids[id]
  rec.seen[#rec.seen + 1] = how
  if how == "reported" and rec.parent and parent ~= rec.parent then
    self:violation("error E%d (%s) was reported inside '%s', expected directly inside '%s' %s",
      id, rec.kind, safe(parent), rec.parent, where)
  end
end

-- Walk an error value that surfaced (a group: every leaf; else the value).
-- Checks the structure of the groups on the way.
function M:walk(e, how, group, where, cancel_ok)
  local tether = self.tether
  if not tether.ErrorGroup:is(e) then
    return self:leaf(e, how, nil, group, where, cancel_ok)
  end
  local errs = rawget(e, "errors")
  if type(errs) ~= "table" or math.type(errs.n) ~= "integer" or errs.n < 1 then
    self:violation("malformed ErrorGroup '%s' (errors.n = %s) %s", safe(e.message), safe(errs and errs.n), where)
    return
  end
  local by_group = type(e.message) == "string" and e.message:match(GROUP_MSG)
  for i = 1, errs.n do
    local x = errs[i]
    if by_group then
      local info = e:info(i)
      if type(info) ~= "table" or type(info.task) ~= "string" or type(info.traceback) ~= "string" then
        self:violation("ErrorGroup '%s' has no task name and traceback for error %d %s", e.message, i, where)
      end
    end
    if tether.ErrorGroup:is(x) then
      self:walk(x, how, nil, where, cancel_ok)
    else
      self:leaf(x, how, e.message, nil, where, cancel_ok)
    end
  end
end

-- The test's own code caught `e` (and drops it): everything in it counts as
-- caught.  `cancel_ok`: a catch handler for tether.Cancelled, which gets a
-- group of one holding the Cancelled.
function M:catch(e, group, where, cancel_ok)
  self:walk(e, "caught", group, where or "(caught)", cancel_ok)
end

-- What reached the top of the tree.
function M:report(e, where)
  self:walk(e, "reported", nil, where or "(at the top)")
end

-- After the tree: every error surfaced exactly once.  Returns the violations.
function M:verify()
  for id = 1, self.next_id do
    local rec = self.ids[id]
    if rec and #rec.seen ~= 1 then
      self:violation("error E%d (%s: %s) was raised once and surfaced %d times (%s)", id, rec.kind,
        safe(rec.value), #rec.seen, table.concat(rec.seen, ", "))
    end
  end
  for what, t in pairs { ["nil"] = self.nils, ["false"] = self.falses } do
    for g, c in pairs(t) do
      if c.raised ~= c.seen then
        self:violation("group %s: %d %s errors raised, %d surfaced", g, c.raised, what, c.seen)
      end
    end
  end
  if self.raised ~= self.reported + self.caught then
    self:violation("errors raised %d ~= reported %d + caught %d", self.raised, self.reported, self.caught)
  end
  return self.violations
end

return M
