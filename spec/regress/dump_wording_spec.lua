-- Regression: tether.dump() said "(1 tasks)", "at ?" for a task running a C
-- function, did not say which task t:wait waits for, and showed generated
-- names for the group and tasks inside gather and first.
local tether = require("tether")

describe("tether.dump()", function()
  it("uses the singular for one task", function()
    local text
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(tether.sleep, 0.01)
        text = tether.dump()
      end)
    end)
    assert.matches("(1 task)", text, 1, true)
    assert.is_nil(text:find("1 tasks", 1, true))
  end)

  it("shows a task that runs only a C function without 'at ?'", function()
    local text
    tether.run(function()
      tether.with_group(function(g)
        g:spawn({ name = "napper" }, tether.sleep, 0.02)
        tether.sleep(0.001)
        text = tether.dump()
      end)
    end)
    local line = text:match("[^\n]*task 'napper'[^\n]*")
    assert.is_nil(line:find("at ?", 1, true), line)
    assert.matches("blocked in sleep", line, 1, true)
  end)

  it("says which task t:wait waits for", function()
    local text
    tether.run(function()
      tether.with_group(function(g)
        local target = g:spawn({ name = "target" }, tether.sleep, 0.02)
        g:spawn({ name = "waiter" }, function() target:wait() end)
        tether.sleep(0.001)
        text = tether.dump()
      end)
    end)
    assert.matches("task 'waiter' [blocked] blocked in t:wait (waits for task 'target')", text, 1, true)
  end)

  it("names gather's and first's group and tasks after them and the functions' lines", function()
    local gtext, ftext
    local function slow() tether.sleep(0.01) end
    local line = debug.getinfo(slow, "S").linedefined
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function() tether.sleep(0.002); gtext = tether.dump() end)
        tether.gather({ slow, slow })
      end)
      tether.with_group(function(g)
        g:spawn(function() tether.sleep(0.002); ftext = tether.dump() end)
        tether.first({ slow, slow })
      end)
    end)
    assert.matches("group 'gather at [^']*dump_wording_spec.lua:%d+'", gtext)
    assert.matches("task 'gather%[2%] [^']*dump_wording_spec.lua:" .. line .. "'", gtext)
    assert.matches("group 'first at [^']*dump_wording_spec.lua:%d+'", ftext)
    assert.matches("first[1] ", ftext, 1, true)
    assert.is_nil(gtext:find("task#", 1, true))
  end)
end)
