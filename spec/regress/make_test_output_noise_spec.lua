-- Regression: `make test` printed the allocation-failure harness's counts
-- between busted's progress marks and echoed the harness's compile command.
-- The output is now busted's progress, the failures and the summary line.
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec/regress"
local ROOT = SPEC_DIR:match("^(.*)/spec/regress$") or "."

local function sh(cmd)
  local p = assert(io.popen("cd '" .. ROOT .. "' && " .. cmd .. " 2>&1"))
  local out = p:read("a")
  p:close()
  return out
end

describe("make test's output", function()
  it("does not echo the harness's compile command when it builds it", function()
    if sh("command -v make >/dev/null && command -v cc >/dev/null && echo yes"):find("yes") == nil then
      pending("no make or cc here")
      return
    end
    -- -W: as if harness.c had changed, so the rule runs (into build/, as make test does)
    local out = sh("make --no-print-directory -W spec/alloc/harness.c build/alloc-harness")
    assert.are.equal("", out)
  end)

  it("the allocation sweep writes its counts only when asked to", function()
    local f = assert(io.open(ROOT .. "/spec/alloc_spec.lua"))
    local src = f:read("a")
    f:close()
    for call in src:gmatch("()io%.stderr:write") do
      local before = src:sub(math.max(1, call - 200), call - 1)
      assert.matches('if os.getenv%("TETHER_ALLOC_VERBOSE"%) then%s*$', before)
    end
  end)
end)
