-- Ctrl-C: SIGINT to a real lua5.4 process cancels every blocked task, runs all cleanup, and interrupts tether.run (§5).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local function wall()
  local p = assert(io.popen("date +%s.%N"))
  local t = tonumber(p:read("l"))
  p:close()
  return t
end

local function slurp(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- Starts the fixture in the given mode; returns a child object with its stdout pipe.
local function start(mode)
  local errfile = os.tmpname()
  local cmd = support.in_checkout(("exec timeout 20 lua5.4 spec/fixtures/sigint.lua %s 2>'%s'"):format(mode, errfile))
  return { pipe = assert(io.popen(cmd, "r")), errfile = errfile, lines = {} }
end

-- Reads stdout lines until one matches the pattern; returns the captures (nil at EOF).
local function wait_for(child, pattern)
  while true do
    local line = child.pipe:read("l")
    if not line then return nil end
    child.lines[#child.lines + 1] = line
    local cap = { line:match(pattern) }
    if cap[1] ~= nil then return table.unpack(cap) end
  end
end

-- Reads the rest of stdout and the exit status.
local function finish(child)
  for line in child.pipe:lines() do child.lines[#child.lines + 1] = line end
  local ok, how, code = child.pipe:close()
  child.ok, child.how, child.code = ok, how, code
  child.stderr = slurp(child.errfile)
  os.remove(child.errfile)
  child.out = table.concat(child.lines, "\n")
  return child
end

local function index_of(lines, text)
  for i, l in ipairs(lines) do
    if l == text then return i end
  end
end

local function describe_child(child)
  return ("exit: %s %s %s\n--- stdout\n%s\n--- stderr\n%s"):format(
    tostring(child.ok), tostring(child.how), tostring(child.code), child.out or "", child.stderr or "")
end

local CLEANUP_MARKERS = {
  "closed worker1 cancelled", "closed worker2 cancelled", "closed worker3 cancelled",
  "handler ran cancelled", "closed scoped cancelled",
  "closed nested-child cancelled", "closed nested-body cancelled", "closed root-body cancelled",
}

-- Runs the fixture, waits until every task is blocked, sends one SIGINT, returns the finished child.
local function interrupt_once(mode)
  local child = start(mode)
  local pid = wait_for(child, "^ready (%d+)$")
  if not pid then return finish(child), nil end
  local t_kill = wall()
  os.execute("kill -INT " .. pid)
  finish(child)
  child.after_kill = wall() - t_kill
  return child, pid
end

describe("Ctrl-C (SIGINT)", function()
  it("cancels every blocked task, runs each <close> and cleanup handler, and interrupts tether.run", function()
    local child, pid = interrupt_once("caught")
    assert.is_not_nil(pid, "the fixture never became ready:\n" .. describe_child(child))
    assert.is_true(child.after_kill < 10, "the run took " .. child.after_kill .. " s to stop:\n" .. describe_child(child))
    local ran_at = index_of(child.lines, "run ok=false")
    assert.is_not_nil(ran_at, "tether.run did not raise:\n" .. describe_child(child))
    for _, m in ipairs(CLEANUP_MARKERS) do
      local at = index_of(child.lines, m)
      assert.is_not_nil(at, "missing cleanup '" .. m .. "':\n" .. describe_child(child))
      assert.is_true(at < ran_at, "cleanup '" .. m .. "' ran after tether.run returned")
    end
    local err_line = assert(child.out:match("run error=([^\n]*)"))
    assert.is_truthy(err_line:lower():find("interrupt", 1, true), "the error does not say interrupted: " .. err_line)
    assert.is_not_nil(index_of(child.lines, "second run=again"), "tether.run did not work again:\n" .. describe_child(child))
    assert.is_true(child.ok, describe_child(child))
    assert.equal(1, tether.run(function() return 1 end))
  end)

  it("tells the cancelled code why: the Cancelled's reason says interrupted", function()
    local child, pid = interrupt_once("caught")
    assert.is_not_nil(pid, "the fixture never became ready:\n" .. describe_child(child))
    local reason = child.out:match("handler reason=([^\n]*)")
    assert.is_not_nil(reason, describe_child(child))
    assert.is_truthy(reason:lower():find("interrupt", 1, true), "reason: " .. reason)
    assert.equal(1, tether.run(function() return 1 end))
  end)

  it("raises a tether.Interrupted, which is not a tether.Error", function()
    local child, pid = interrupt_once("caught")
    assert.is_not_nil(pid, "the fixture never became ready:\n" .. describe_child(child))
    assert.is_not_nil(index_of(child.lines, "interrupted class=true"), describe_child(child))
    assert.is_not_nil(index_of(child.lines, "is tether.Error=false"), describe_child(child))
    assert.equal(1, tether.run(function() return 1 end))
  end)

  it("left uncaught, ends the script with a message saying the run was interrupted, after all cleanup", function()
    local child, pid = interrupt_once("uncaught")
    assert.is_not_nil(pid, "the fixture never became ready:\n" .. describe_child(child))
    assert.is_true(child.after_kill < 10, describe_child(child))
    for _, m in ipairs(CLEANUP_MARKERS) do
      assert.is_not_nil(index_of(child.lines, m), "missing cleanup '" .. m .. "':\n" .. describe_child(child))
    end
    assert.is_nil(child.out:find("unreachable", 1, true), describe_child(child))
    assert.is_truthy(child.stderr:lower():find("interrupt", 1, true), describe_child(child))
    assert.is_true(child.how == "exit" and child.code ~= 0 and child.code ~= 124, describe_child(child))
    assert.equal(1, tether.run(function() return 1 end))
  end)

  it("stops tasks that never block but keep passing checkpoints", function()
    local child, pid = interrupt_once("busy")
    assert.is_not_nil(pid, "the fixture never became ready:\n" .. describe_child(child))
    assert.is_true(child.how == "exit" and child.code ~= 124,
      "SIGINT did not stop the busy run (killed by the 20 s timeout):\n" .. describe_child(child))
    assert.is_true(child.after_kill < 10, "the run took " .. child.after_kill .. " s to stop")
    local ran_at = index_of(child.lines, "run ok=false")
    assert.is_not_nil(ran_at, "tether.run did not raise:\n" .. describe_child(child))
    for _, m in ipairs({ "closed spinner1 cancelled", "closed spinner2 cancelled", "closed busy-body cancelled" }) do
      local at = index_of(child.lines, m)
      assert.is_not_nil(at, "missing cleanup '" .. m .. "':\n" .. describe_child(child))
      assert.is_true(at < ran_at)
    end
    local err_line = assert(child.out:match("run error=([^\n]*)"))
    assert.is_truthy(err_line:lower():find("interrupt", 1, true), err_line)
    assert.equal(1, tether.run(function() return 1 end))
  end)

  it("after tether.run has returned, SIGINT ends the script again as usual", function()
    local child, pid = interrupt_once("after")
    assert.is_not_nil(pid, "the fixture never became ready:\n" .. describe_child(child))
    assert.is_nil(index_of(child.lines, "survived SIGINT"), "SIGINT was swallowed:\n" .. describe_child(child))
    assert.is_false(child.ok == true, describe_child(child))
    assert.is_false(child.how == "exit" and child.code == 124, "killed by timeout:\n" .. describe_child(child))
    assert.is_true(child.after_kill < 10, describe_child(child))
    assert.equal(1, tether.run(function() return 1 end))
  end)

  it("ends the process at once on a second SIGINT during a long cleanup", function()
    local child = start("long")
    local pid = wait_for(child, "^ready (%d+)$")
    if not pid then
      finish(child)
      error("the fixture never became ready:\n" .. describe_child(child))
    end
    os.execute("kill -INT " .. pid)
    local started = wait_for(child, "^(long cleanup start)$")
    if not started then
      finish(child)
      error("the first SIGINT did not start the cleanup:\n" .. describe_child(child))
    end
    local t_kill = wall()
    os.execute("kill -INT " .. pid)
    finish(child)
    local took = wall() - t_kill
    assert.is_true(took < 10, "the second SIGINT did not end the process (" .. took .. " s):\n" .. describe_child(child))
    assert.is_nil(index_of(child.lines, "long cleanup end"), describe_child(child))
    assert.is_nil(index_of(child.lines, "second run=again"), describe_child(child))
    assert.is_false(child.ok == true, "the process exited successfully:\n" .. describe_child(child))
    assert.is_false(child.how == "exit" and child.code == 124, "killed by timeout:\n" .. describe_child(child))
    assert.equal(1, tether.run(function() return 1 end))
  end)
end)
