-- Regression: a group of 20 equal failures printed every one of them (81
-- lines). The rendering now stops, as CPython's traceback module does, after
-- 15 errors per group and 10 levels of nesting ("... and N more errors");
-- eg.errors keeps everything.
local tether = require("tether")

describe("tostring of a big ErrorGroup", function()
  it("shows 15 errors of a group, then says how many more there are", function()
    local ok, eg = pcall(tether.run, function()
      tether.with_group({ policy = "supervisor" }, function(g)
        for _ = 1, 20 do g:spawn(function() error("same", 0) end) end
      end)
    end)
    assert.is_false(ok)
    assert.are.equal(20, eg.errors.n)
    local text = tostring(eg)
    assert.matches("(20 sub-errors)", text, 1, true)
    assert.matches("[15] in task", text, 1, true)
    assert.is_nil(text:find("[16]", 1, true))
    assert.matches("\n  ... and 5 more errors$", text)
    local _, lines = text:gsub("\n", "")
    assert.is_true(lines < 81 * 15 / 20 + 2, "too many lines: " .. lines)
  end)

  it("shows 10 levels of nesting, then counts the errors below", function()
    local e = tether.ErrorGroup("bottom", { "x", "y" })
    for i = 1, 12 do e = tether.ErrorGroup("level " .. i, { e }) end
    local text = tostring(e)
    assert.matches("level 3 (1 sub-error)", text, 1, true)
    assert.is_nil(text:find("level 2 (", 1, true))
    assert.matches("... and 2 more errors (nested more than 10 levels deep)", text, 1, true)
    assert.is_nil(text:find("bottom", 1, true))
  end)

  it("a group of 15 or fewer shows every error", function()
    local errs = {}
    for i = 1, 15 do errs[i] = "e" .. i end
    local text = tostring(tether.ErrorGroup("m", errs))
    assert.matches("[15] e15", text, 1, true)
    assert.is_nil(text:find("more error", 1, true))
  end)
end)
