-- Regression: eg:split (and every matcher of catch/except) returned a wrong
-- answer, silently, when memory ran out while matching a pattern: the leaf's
-- tostring runs under a protected call (push_safe_tostring) that turns any
-- failure -- a memory error included -- into a placeholder text, the
-- pattern does not match the placeholder, and the leaf lands in `rest`.
-- `eg:split("^a")` on { "a1", "a2", "a3", "a4" } gave 3 matched, 1 rest.
-- A memory error must surface as one, never as a different result.  Found by
-- spec/alloc_spec.lua (scenario split).
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/regress/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local harness = require("alloc.run")

local CODE = [[
local tether = require("tether")
local k = math.tointeger(tonumber((...)))
local res
tether.run(function()
  local eg = tether.ErrorGroup("g", { "a1", "a2", "a3", "a4" })
  local function f() alloc_fail_after(k) return eg:split("^a") end
  local ok, m, r = pcall(f)
  alloc_disarm()
  if ok then
    res = ("ok matched=%d rest=%d"):format(m and m.errors.n or 0, r and r.errors.n or 0)
  else
    res = "error " .. tostring(m)
  end
end)
io.write("hits=", alloc_total_hits(), " ", res, "\n")
]]

describe("a pattern matcher running out of memory", function()
  setup(harness.ensure)

  it("raises 'not enough memory' or gives the right split, never a wrong one", function()
    local tried = 0
    for k = 1, 100 do
      local r = harness.run_code(CODE, { k })
      assert(r.exit == 0, ("k=%d: exit status %s:\n%s"):format(k, tostring(r.exit), r.out))
      local hits, res = r.out:match("hits=(%d+) ([^\n]*)")
      assert(hits, "no result line: " .. r.out)
      if tonumber(hits) == 0 then break end
      tried = tried + 1
      assert(res == "ok matched=4 rest=0" or res:find("not enough memory", 1, true),
        ("k=%d: split gave %s"):format(k, res))
    end
    assert.is_true(tried > 0)
  end)
end)
