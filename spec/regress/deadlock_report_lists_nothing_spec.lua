-- Regression: "tether.run: deadlock: every task is blocked..." listed no
-- task; the error now carries the dump taken when the deadlock was found
-- (field dump, and in the message): names, what each waits on, and where.
local tether = require("tether")

describe("a deadlock error", function()
  it("holds the dump of the stuck tasks, taken before they were cancelled", function()
    local ok, err = pcall(tether.run, function()
      tether.with_group({ name = "pair" }, function(g)
        local a, b
        a = g:spawn({ name = "alice" }, function() tether.checkpoint(); b:wait() end)
        b = g:spawn({ name = "bob" }, function() tether.checkpoint(); a:wait() end)
      end)
    end)
    assert.is_false(ok)
    assert.matches("^tether.run: deadlock", err.message)
    assert.is_string(err.dump)
    assert.matches("task 'alice' [blocked] blocked in t:wait (waits for task 'bob') at", err.dump, 1, true)
    assert.matches("task 'bob' [blocked] blocked in t:wait (waits for task 'alice') at", err.dump, 1, true)
    assert.matches("deadlock_report_lists_nothing_spec.lua:%d+", err.dump)
    assert.matches("group 'pair'", err.dump, 1, true)
    assert.matches(err.dump, tostring(err), 1, true)
    assert.is_nil(err.dump:find("cancelled", 1, true))   -- taken before the cancellation
  end)
end)
