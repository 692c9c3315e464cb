-- Regression: a worker state got package.path and package.cpath once, when it
-- was made, so a worker made before the program changed its paths (here:
-- before busted's spec files prepend theirs) loaded modules from the old ones.
-- Workers now take the caller's paths at every call in which they changed.
local tether = require("tether")

describe("tether.thread.run", function()
  it("gives the worker the caller's package paths as they are at the call", function()
    local saved, savedc = package.path, package.cpath
    local got = tether.run(function()
      local run = tether.thread.run
      local function paths() return package.path, package.cpath end
      local r = {}
      r[1] = { run(paths) }
      package.path = "/nowhere/?.lua;" .. saved
      package.cpath = "/nowhere/?.so;" .. savedc
      r[2] = { run(paths) }
      package.path, package.cpath = saved, savedc
      r[3] = { run(paths) }
      return r
    end)
    package.path, package.cpath = saved, savedc
    assert.same({ saved, savedc }, got[1])
    assert.same({ "/nowhere/?.lua;" .. saved, "/nowhere/?.so;" .. savedc }, got[2])
    assert.same({ saved, savedc }, got[3])
  end)
end)
