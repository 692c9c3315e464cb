-- tether.gather (best effort, results in input order) and tether.first (race, losers cancelled) (contract §4).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local is_cancelled = support.is_cancelled

describe("tether.gather", function()
  it("returns one result table per function, in input order, whatever order they finish in", function()
    local r = tether.run(function()
      return tether.gather({
        function() tether.sleep(0.03); return "slow", 1 end,
        function() return "instant" end,
        function() tether.checkpoint(); return nil, nil end,
        function() tether.sleep(0.01) end,
      })
    end)
    assert.equal(4, #r)
    assert.same({ ok = true, n = 2, "slow", 1 }, r[1])
    assert.same({ ok = true, n = 1, "instant" }, r[2])
    assert.same({ ok = true, n = 2 }, r[3])
    assert.same({ ok = true, n = 0 }, r[4])
  end)

  it("runs the functions concurrently", function()
    local elapsed, log = tether.run(function()
      local t0, log = tether.now(), {}
      tether.gather({
        function() log[#log + 1] = "a start"; tether.sleep(0.1); log[#log + 1] = "a end" end,
        function() log[#log + 1] = "b start"; tether.sleep(0.1); log[#log + 1] = "b end" end,
      })
      return tether.now() - t0, log
    end)
    assert.same({ "a start", "b start" }, { log[1], log[2] })
    assert.equal(4, #log)
    assert.is_true(elapsed >= 0.1 - 1e-6)
  end)

  it("records a failure as ok = false with the error unchanged, and cancels nothing else", function()
    local r = tether.run(function()
      local tbl = { "my error" }
      local res = tether.gather({
        function() tether.sleep(0.03); return "finished anyway" end,
        function() error(tbl) end,
        function() error("text error", 0) end,
        function() error(nil) end,
        function() tether.checkpoint(); tether.sleep(0.01); return "also fine" end,
      })
      return { res = res, tbl = tbl }
    end)
    local res = r.res
    assert.equal(5, #res)
    assert.same({ ok = true, n = 1, "finished anyway" }, res[1])
    assert.is_false(res[2].ok)
    assert.is_true(rawequal(r.tbl, res[2].error))
    assert.is_false(res[3].ok)
    assert.equal("text error", res[3].error)
    assert.is_false(res[4].ok)
    assert.is_nil(res[4].error)
    assert.same({ ok = true, n = 1, "also fine" }, res[5])
  end)

  it("is cancelled with its task when a sibling fails, and adds nothing to the ErrorGroup", function()
    local eg, cleaned = tether.run(function()
      local cleaned = 0
      local function sleeper()
        local ok, e = pcall(tether.sleep, 10)
        if is_cancelled(e) then cleaned = cleaned + 1 end
        error(e)
      end
      local ok, eg = pcall(tether.with_group, function(g)
        g:spawn({ name = "gatherer" }, function() tether.gather({ sleeper, sleeper }) end)
        g:spawn({ name = "sibling" }, function() tether.sleep(0.01); error("sibling failed", 0) end)
      end)
      return eg, cleaned
    end)
    assert.is_true(tether.ErrorGroup:is(eg))
    assert.equal(1, eg.errors.n)
    assert.equal("sibling failed", eg.errors[1])
    assert.equal(2, cleaned)
  end)

  it("returns an empty array for no functions", function()
    local r = tether.run(function() return tether.gather({}) end)
    assert.same({}, r)
  end)

  it("propagates an outer cancellation instead of reporting it as a result", function()
    local r, cleaned, elapsed = tether.run({ clock = "virtual" }, function()
      local t0, cleaned = tether.now(), 0
      local function sleeper()
        local ok, e = pcall(tether.sleep, 10)
        if is_cancelled(e) then cleaned = cleaned + 1 end
        error(e)
      end
      local r = tether.move_on_after(0.02, function()
        return tether.gather({ sleeper, sleeper, sleeper })
      end)
      return r, cleaned, tether.now() - t0
    end)
    assert.equal(false, r)
    assert.equal(3, cleaned)
    assert.is_true(elapsed < 5)
  end)
end)

describe("tether.first", function()
  it("returns the first success and cancels the rest, waiting for them to finish", function()
    local r = tether.run({ clock = "virtual" }, function()
      local t0 = tether.now()
      local cancelled, closed = 0, 0
      local function loser()
        local c <close> = setmetatable({}, { __close = function() closed = closed + 1 end })
        local ok, e = pcall(tether.sleep, 10)
        if is_cancelled(e) then cancelled = cancelled + 1 end
        error(e)
      end
      local res = table.pack(tether.first({
        loser,
        function() tether.sleep(0.02); return "winner", nil, 3 end,
        loser,
      }))
      return { res = res, cancelled = cancelled, closed = closed, elapsed = tether.now() - t0 }
    end)
    assert.same({ n = 3, "winner", nil, 3 }, r.res)
    assert.equal(2, r.cancelled)
    assert.equal(2, r.closed)
    assert.is_true(r.elapsed < 5)
  end)

  it("ignores failures while another function can still succeed", function()
    local v = tether.run(function()
      return tether.first({
        function() error("fails at once", 0) end,
        function() tether.checkpoint(); error("fails soon", 0) end,
        function() tether.sleep(0.02); return "late success" end,
      })
    end)
    assert.equal("late success", v)
  end)

  it("raises an ErrorGroup of every failure when all fail", function()
    local e, tbl = tether.run(function()
      local tbl = { "table error" }
      local ok, e = pcall(tether.first, {
        function() error("one", 0) end,
        function() tether.checkpoint(); error(tbl) end,
        function() tether.sleep(0.01); error(nil) end,
      })
      assert(not ok, "first should have raised")
      return e, tbl
    end)
    assert.is_true(tether.ErrorGroup:is(e))
    assert.equal(3, e.errors.n)
    local seen_one, seen_tbl, seen_nil = false, false, false
    for i = 1, e.errors.n do
      local v = e.errors[i]
      if v == "one" then seen_one = true
      elseif rawequal(v, tbl) then seen_tbl = true
      elseif v == nil then seen_nil = true end
    end
    assert.is_true(seen_one and seen_tbl and seen_nil)
  end)

  it("with several instant successes returns the one started first", function()
    local v = tether.run(function()
      return tether.first({
        function() return "a" end,
        function() return "b" end,
      })
    end)
    assert.equal("a", v)
  end)

  it("propagates an outer cancellation and cancels every contender", function()
    local r, cancelled = tether.run(function()
      local cancelled = 0
      local function contender()
        local ok, e = pcall(tether.sleep, 10)
        if is_cancelled(e) then cancelled = cancelled + 1 end
        error(e)
      end
      local r = tether.move_on_after(0.02, function()
        return tether.first({ contender, contender })
      end)
      return r, cancelled
    end)
    assert.equal(false, r)
    assert.equal(2, cancelled)
  end)

  it("waits for a loser's shielded cleanup before returning the winner", function()
    local v, loser_done = tether.run(function()
      local loser_done = false
      local v = tether.first({
        function()
          tether.shield(function() tether.sleep(0.05) end)
          loser_done = true
          tether.checkpoint()
          return "loser"
        end,
        function() tether.sleep(0.01); return "winner" end,
      })
      return v, loser_done
    end)
    assert.equal("winner", v)
    assert.is_true(loser_done)
  end)

  it("does not report losers' cancellations as failures", function()
    local v = tether.run(function()
      local ok, v = pcall(tether.first, {
        function() tether.sleep(10) end,
        function() tether.checkpoint(); return "won" end,
      })
      assert(ok, "first raised: " .. tostring(v))
      return v
    end)
    assert.equal("won", v)
  end)
end)
