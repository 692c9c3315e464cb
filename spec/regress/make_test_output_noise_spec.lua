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
    -- the harness's rule, run into a scratch path (make check's sanitizer
    -- settings are not for the compiler)
    local dir = os.tmpname()
    os.remove(dir)
    local out = sh(("mkdir -p '%s' && env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u UBSAN_OPTIONS "
      .. "make --no-print-directory ALLOC_HARNESS='%s/alloc-harness' '%s/alloc-harness'"):format(dir, dir, dir))
    local built = io.open(dir .. "/alloc-harness") ~= nil
    os.execute("rm -rf '" .. dir .. "'")
    assert.are.equal("", out)
    assert.is_true(built)
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
