-- Regression: the traceback of a runtime error (arithmetic on nil) started
-- one frame too high, at the caller of the faulting function, while error()
-- kept its frame; and every leaf ended with a "[C]: in ?" line.
local tether = require("tether")

local function parse(s)
  local n = tonumber(s) + 1            -- FAULT: runtime error here
  return n
end
local function handle(item)
  local v = parse(item)                -- CALL
  return v
end
local function parse_err(s)
  error("cannot parse " .. tostring(s))  -- RAISE
end
local function handle_err(item)
  local v = parse_err(item)
  return v
end

local function line_of(tag)
  local i = 0
  for l in io.lines(debug.getinfo(1, "S").source:sub(2)) do
    i = i + 1
    if l:find("-- " .. tag, 1, true) then return i end
  end
end

local function first_frame(tb)
  return tb:match("stack traceback:\n\t([^\n]*)")
end

describe("a task's traceback", function()
  local eg
  setup(function()
    local ok, e = pcall(tether.run, function()
      tether.with_group({ policy = "supervisor" }, function(g)
        g:spawn({ name = "runtime" }, handle, nil)
        g:spawn({ name = "raised" }, handle_err, 7)
      end)
    end)
    assert.is_false(ok)
    eg = e
  end)

  it("of a runtime error starts at the faulting line, then its caller", function()
    local tb = eg:info(1).traceback
    local here = "traceback_loses_faulting_frame_spec.lua:"
    assert.matches(here .. line_of("FAULT") .. ":", first_frame(tb), 1, true)
    assert.matches(here .. line_of("CALL") .. ":", tb, 1, true)
  end)

  it("of error() starts at the line that called error", function()
    local tb = eg:info(2).traceback
    assert.matches("traceback_loses_faulting_frame_spec.lua:" .. line_of("RAISE") .. ":",
                   first_frame(tb), 1, true)
    assert.is_nil(tb:find("in function 'error'", 1, true))
  end)

  it("has no '[C]: in ?' line at the bottom", function()
    for i = 1, 2 do
      assert.is_nil(eg:info(i).traceback:find("[C]: in ?", 1, true), eg:info(i).traceback)
    end
    assert.is_nil(tostring(eg):find("[C]: in ?", 1, true))
  end)
end)
