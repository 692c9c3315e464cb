-- Regression: a group whose join ran out of memory while building its
-- ErrorGroup raised a bare "not enough memory" and dropped every error its
-- tasks had raised (recorded long before the allocation failed): "every
-- error is reported" broke under memory pressure.  k_group_join builds the
-- ErrorGroup (a table, the message, the metatable) with nothing protecting
-- what it had recorded.  Found by spec/alloc_spec.lua (scenarios
-- errorgroup_build, group_exit, timer_start).
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/regress/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local harness = require("alloc.run")

local CODE = [[
local tether = require("tether")
local k = math.tointeger(tonumber((...)))
local ok, err = pcall(tether.run, function()
  tether.with_group({ policy = "supervisor" }, function(g)
    local a = g:spawn(function() error("A", 0) end)
    local b = g:spawn(function() error("B", 0) end)
    a:wait()
    b:wait()
    alloc_fail_after(k) -- both errors are recorded: only the join and the ErrorGroup are left
  end)
end)
alloc_disarm()
local found = {}
local function walk(e)
  if tether.ErrorGroup:is(e) then for i = 1, e.errors.n do walk(e.errors[i]) end
  else found[#found + 1] = tostring(e) end
end
if not ok then walk(err) end
table.sort(found)
io.write("hits=", alloc_total_hits(), " errors=", table.concat(found, ","), "\n")
]]

describe("a group's join running out of memory", function()
  setup(harness.ensure)

  it("still reports the errors its tasks raised", function()
    local tried = 0
    for k = 1, 100 do
      local r = harness.run_code(CODE, { k })
      assert(r.exit == 0, ("k=%d: exit status %s:\n%s"):format(k, tostring(r.exit), r.out))
      local hits, errors = r.out:match("hits=(%d+) errors=([^\n]*)")
      assert(hits, "no result line: " .. r.out)
      if tonumber(hits) == 0 then break end
      tried = tried + 1
      -- A and B must be there; a memory error may come with them
      assert(errors:find("A", 1, true) and errors:find("B", 1, true),
        ("k=%d: the tasks' errors were lost; tether.run raised only: %s"):format(k, errors))
    end
    assert.is_true(tried > 0)
  end)
end)
