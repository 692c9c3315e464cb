-- Regression: an ErrorGroup did not say where a failing task was started
-- nor by whom. eg:info(i) now has spawned_at ("file.lua:LINE" of the
-- g:spawn / g:start call) and parents (names up to the root, nearest
-- first), and the tree rendering shows them.
local tether = require("tether")

local here = "failing_task_origin_unknown_spec.lua:"

describe("a failing task's info", function()
  local eg, spawn_line, start_line, root_line
  setup(function()
    local root = function()
      tether.with_group({ policy = "supervisor" }, function(g)
        g:spawn({ name = "mid" }, function()
          tether.with_group(function(g2)
            spawn_line = debug.getinfo(1, "l").currentline + 1
            g2:spawn({ name = "leaf" }, function() error("boom", 0) end)
          end)
        end)
        start_line = debug.getinfo(1, "l").currentline + 1
        g:start({ name = "starter" }, function(started) started(); error("late", 0) end)
      end)
    end
    root_line = debug.getinfo(root, "S").linedefined
    local ok, e = pcall(tether.run, root)
    assert.is_false(ok)
    eg = e
  end)

  local function info_of(name)
    for i = 1, eg.errors.n do
      if eg:info(i).task == name then return eg:info(i), eg.errors[i] end
    end
  end

  it("says where it was spawned and the chain of parent tasks up to the root", function()
    local mid, inner = info_of("mid")
    assert.is_true(tether.ErrorGroup:is(inner))
    local info = inner:info(1)
    assert.are.equal("leaf", info.task)
    assert.matches(here .. spawn_line .. "$", info.spawned_at)
    assert.are.same({ "mid", "spec/regress/" .. here .. root_line }, info.parents)
    assert.are.same({ "spec/regress/" .. here .. root_line }, mid.parents)
  end)

  it("covers g:start too", function()
    local info = info_of("starter")
    assert.matches(here .. start_line .. "$", info.spawned_at)
  end)

  it("shows in the tree rendering", function()
    local text = tostring(eg)
    assert.matches("spawned at [^\n]*" .. here .. spawn_line .. " by 'mid' < '", text)
  end)
end)
