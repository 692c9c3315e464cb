-- examples/pipeline.lua, run as a user runs it: results in order, a clean shutdown, a failing stage reported once.
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local function run(args)
  local p = assert(io.popen(support.in_checkout("timeout 60 lua5.4 examples/pipeline.lua " .. args .. " 2>&1"), "r"))
  local out = p:read("a")
  local ok, _, status = p:close()
  return out, ok, status
end

describe("examples/pipeline.lua", function()
  it("writes every line once, in input order, and shuts down when the reader closes the first channel", function()
    local out, ok = run("ok")
    assert(ok, out)
    local ns = {}
    for n in out:gmatch("\n%s*(%d+)  %u") do ns[#ns + 1] = tonumber(n) end
    assert.are.equal(24, #ns, out)
    for i = 1, 24 do assert.are.equal(i, ns[i]) end
    assert.matches("24 lines written, in order; every channel closed", out)
    assert.matches("%[monitor%] lines %d/4", out)          -- back-pressure is shown
  end)

  it("stops every stage when a worker fails, with one ErrorGroup holding that one error", function()
    local out, ok = run("fail")
    assert(ok, out)
    assert.matches("pipeline stopped: cannot transform line 13", out)
    assert.matches("errors in task group 'pipeline' %(1 sub%-error%)", out)
    assert.is_nil(out:find("lines written", 1, true))
    for n in out:gmatch("\n%s*(%d+)  %u") do               -- in order: nothing from line 13 on
      assert.is_true(tonumber(n) < 13, "line " .. n .. " was written after line 13 failed")
    end
  end)
end)
