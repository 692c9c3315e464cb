-- Regression: misspelt option keys, options in the wrong place, extra
-- arguments and a map of handlers were accepted silently (and ignored).
local tether = require("tether")

local function err_of(fn)
  local ok, e = pcall(fn)
  assert.is_false(ok, "expected an error")
  return tostring(e)
end

describe("wrong input", function()
  it("an unknown option of with_group names the function and the key", function()
    local msg = err_of(function()
      tether.run(function() tether.with_group({ limt = 2 }, function() end) end)
    end)
    assert.matches("tether.with_group", msg, 1, true)
    assert.matches("'limt'", msg, 1, true)
  end)

  it("an unknown option of g:spawn and g:start names the method and the key", function()
    local spawn_msg, start_msg
    tether.run(function()
      tether.with_group(function(g)
        spawn_msg = err_of(function() g:spawn({ deamon = true }, function() end) end)
        start_msg = err_of(function() g:start({ nmae = "x" }, function(started) started() end) end)
      end)
    end)
    assert.matches("g:spawn", spawn_msg, 1, true)
    assert.matches("'deamon'", spawn_msg, 1, true)
    assert.matches("g:start", start_msg, 1, true)
    assert.matches("'nmae'", start_msg, 1, true)
  end)

  it("an unknown option of cancel_scope names the function and the key", function()
    local msg = err_of(function() tether.cancel_scope({ timout = 1 }) end)
    assert.matches("tether.cancel_scope", msg, 1, true)
    assert.matches("'timout'", msg, 1, true)
  end)

  it("options after the body of with_group are an error that says options go first", function()
    local msg = err_of(function()
      tether.run(function() tether.with_group(function() end, { limit = 2 }) end)
    end)
    assert.matches("tether.with_group", msg, 1, true)
    assert.matches("#2", msg, 1, true)
    assert.matches("options go first", msg, 1, true)
  end)

  it("an argument after gather's and first's options is an error", function()
    local g_msg, f_msg
    tether.run(function()
      g_msg = err_of(function() tether.gather({}, { limit = 2 }, "extra") end)
      f_msg = err_of(function() tether.first({ function() end }, nil, "extra") end)
    end)
    assert.matches("tether.gather", g_msg, 1, true)
    assert.matches("#3", g_msg, 1, true)
    assert.matches("tether.first", f_msg, 1, true)
  end)

  it("gather and first take a limit that bounds how many functions run at once", function()
    local running, most = 0, 0
    local fns = {}
    for i = 1, 6 do
      fns[i] = function()
        running = running + 1
        most = math.max(most, running)
        tether.sleep(0.005)
        running = running - 1
        return i
      end
    end
    local results, winner, most_first
    tether.run(function()
      results = tether.gather(fns, { limit = 2 })
      assert.are.equal(2, most)
      most = 0
      winner = tether.first(fns, { limit = 3 })
      most_first = most
    end)
    assert.are.equal(6, #results)
    for i = 1, 6 do assert.are.same({ ok = true, n = 1, i }, results[i]) end
    assert.are.equal(1, winner)
    assert.is_true(most_first <= 3)
    assert.matches("'limti'", err_of(function() tether.gather({}, { limti = 2 }) end), 1, true)
    assert.matches("positive integer", err_of(function()
      tether.run(function() tether.gather({}, { limit = 0 }) end)
    end), 1, true)
  end)

  it("a map of handlers in catch and except is an error, not 'no handlers'", function()
    local msg
    tether.run(function()
      msg = err_of(function()
        tether.catch(function() error("boom") end, { [tether.TimeoutError] = function() end })
      end)
    end)
    assert.matches("tether.catch", msg, 1, true)
    assert.matches("{ matcher, function }", msg, 1, true)
    local emsg = err_of(function() tether.except("x", { handler = function() end }) end)
    assert.matches("tether.except", emsg, 1, true)
  end)
end)
