-- except.lua: errors from concurrent tasks, ErrorGroup, and except*-style catch.
--
--   lua5.4 examples/except.lua

local tether = require("tether")

local NetErr = tether.error_class("NetErr", tether.IOError)
local ParseErr = tether.error_class("ParseErr")

-- Three fetches that fail in different ways. The group is a supervisor, so
-- one failure does not cancel the other fetches: all three errors arrive.
local function fetch_all()
  tether.with_group({ name = "fetch", policy = "supervisor" }, function(g)
    g:spawn({ name = "users" }, function()
      tether.sleep(0.01)
      error(NetErr("connection refused", { code = "ECONNREFUSED" }))
    end)
    g:spawn({ name = "orders" }, function()
      tether.sleep(0.01)
      error(ParseErr("unexpected '}' at byte 812"))
    end)
    g:spawn({ name = "stock" }, function()
      tether.fail_after(0.01, tether.sleep, 1)
    end)
  end)
end

tether.run(function()
  -- 1. What a failing group raises: one ErrorGroup with every error.
  local ok, eg = pcall(fetch_all)
  print("ErrorGroup:", eg.message, "errors:", eg.errors.n)
  for i = 1, eg.errors.n do
    print(string.format("  [task %-6s] %s", eg:info(i).task, tostring(eg.errors[i])))
  end

  -- 2. split: separate the errors you can deal with from the rest.
  local net, rest = eg:split(tether.IOError)
  print("split:", #net:leaves(), "I/O error(s),", #rest:leaves(), "other(s)")

  -- 3. catch: handle some leaves, let the others propagate.
  local ok2, left = pcall(tether.catch, fetch_all, {
    { tether.TimeoutError, function(g) print("catch: timeouts:", #g:leaves()) end },
    { function(e) return NetErr:is(e) and e.code == "ECONNREFUSED" end,
      function(g) print("catch: server down, will retry:", g.errors[1]) end },
  })
  print("not handled:", ok2, left.errors.n, left.errors[1])

  -- 4. Nested groups stay nested; the whole tree prints with tracebacks.
  local ok3, outer = pcall(tether.with_group, { name = "outer" }, function(g)
    g:spawn({ name = "fetcher" }, fetch_all)
  end)
  print("nested: the outer group holds", outer.errors.n, "error, itself an ErrorGroup:",
    tether.ErrorGroup:is(outer.errors[1]))
  -- tostring renders the tree; here only its first two lines (then come the
  -- leaves, each with its task name and traceback).
  print(tostring(outer):match("^[^\n]*\n[^\n]*"))

  -- 5. Plain Lua errors are kept as they were raised.
  local _, eg4 = pcall(tether.with_group, function(g)
    g:spawn(function() error({ status = 404 }) end)
  end)
  print("plain table error kept:", eg4.errors[1].status)
end)
