-- Regression: the docs said a pcall "cannot swallow the cancellation" and
-- that move_on_after returns false when its deadline cancelled it; a body
-- that swallows Cancelled and returns makes it return true (as in Trio).
-- They also called blocking "inside a metamethod" impossible, while
-- __index and __close can block. These cases pin down what the docs now say.
local tether = require("tether")

describe("what the docs promise", function()
  it("a body that swallows its deadline's Cancelled and returns: move_on_after gives true", function()
    local r, scope_called, caught
    tether.run(function()
      local scope = tether.cancel_scope({ timeout = 0.001 })
      r = table.pack(scope:run(function()
        pcall(tether.sleep, 1)              -- the deadline's Cancelled, swallowed
        return "swallowed"
      end))
      scope_called, caught = scope.cancel_called, scope.cancelled_caught
      r.mo = table.pack(tether.move_on_after(0.001, function()
        pcall(tether.sleep, 1)
        return "swallowed"
      end))
    end)
    assert.are.same({ true, "swallowed" }, { r[1], r[2] })
    assert.are.same({ true, "swallowed" }, { r.mo[1], r.mo[2] })
    assert.is_true(scope_called)
    assert.is_false(caught)
  end)

  it("but the next checkpoint in the scope raises again: a pcall cannot make it go away there", function()
    local r
    tether.run(function()
      r = table.pack(tether.move_on_after(0.001, function()
        pcall(tether.sleep, 1)
        tether.checkpoint()
        return "not reached"
      end))
    end)
    assert.are.equal(1, r.n)
    assert.is_false(r[1])
  end)

  it("blocking works in __index and __close, and fails clearly in __tostring and table.sort", function()
    local got = {}
    tether.run(function()
      local mt = {
        __index = function() tether.sleep(0); return "indexed" end,
        __close = function() tether.sleep(0); got.closed = true end,
        __tostring = function() tether.sleep(0); return "x" end,
      }
      local obj = setmetatable({}, mt)
      got.index = obj.anything
      do local c <close> = obj end
      got.tostring = select(2, pcall(tostring, obj))
      got.sort = select(2, pcall(table.sort, { 2, 1 }, function(a, b) tether.sleep(0); return a < b end))
    end)
    assert.are.equal("indexed", got.index)
    assert.is_true(got.closed)
    assert.matches("tether.sleep: cannot block here", tostring(got.tostring), 1, true)
    assert.matches("tether.sleep: cannot block here", tostring(got.sort), 1, true)
  end)

  it("README and api.md no longer claim the absolute forms", function()
    local root = (debug.getinfo(1, "S").source:match("^@(.*)/spec/regress/[^/]*$")) or "."
    local function read(p) local f = assert(io.open(root .. "/" .. p)); local s = f:read("a"); f:close(); return s end
    assert.is_nil(read("README.md"):find("cannot swallow the cancellation", 1, true))
    local api = read("doc/api.md")
    assert.is_nil(api:find("inside a metamethod", 1, true))
    assert.matches("`__index`, `__newindex`, `__call`", api, 1, true)
  end)
end)
