-- Randomized task trees over loopback connections (spec/stress/net.lua): cancelled reads lose nothing, cancelled writes close, errors reported once, no fd left.
--
-- Seeded: STRESS_SEED=n picks another seed.  A failing tree is named by its
-- seed; `lua5.4 spec/stress/net.lua SEED 1` style replays run the module as a script.
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local net = require("stress.net")

local SEED = math.tointeger(tonumber(os.getenv("STRESS_SEED") or "")) or 20261126

describe("randomized network trees", function()
  it("cancelled reads and writes at random: bytes in order, errors once, nothing left open", function()
    local fails, totals = {}, { conns = 0, cr = 0, cw = 0, raised = 0, reported = 0 }
    for i = 1, 150 do
      local seed = SEED * 1000 + i
      local r = net.run(seed)
      totals.conns = totals.conns + r.conns
      totals.cr = totals.cr + r.cancelled_reads
      totals.cw = totals.cw + r.cancelled_writes
      totals.raised = totals.raised + r.raised
      totals.reported = totals.reported + r.reported
      if #r.violations > 0 and #fails < 5 then
        fails[#fails + 1] = ("tree seed %d: %s"):format(seed, table.concat(r.violations, "; "))
      end
    end
    assert(#fails == 0, table.concat(fails, "\n"))
    assert.equal(totals.raised, totals.reported)
    assert.is_true(totals.cr > 0 and totals.cw > 0, "no cancellation happened")
    assert.equal(0, tether.stats().handles)
  end)
end)
