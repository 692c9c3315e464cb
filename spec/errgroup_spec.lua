-- ErrorGroup: construction, kept values, info, split/subgroup/leaves, matchers, the printed tree (contract §3).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local raised, sample, shape = support.raised, support.sample, support.shape

local function fixture_cmd(script)
  return support.in_checkout(("timeout 30 lua5.4 %s 2>&1; echo \"EXIT:$?\""):format(script))
end

describe("ErrorGroup", function()
  describe("construction", function()
    it("ErrorGroup(message, errors) holds the message, the errors and their count", function()
      local r = tether.run(function()
        local e1, e2 = tether.Error("one"), { "two" }
        local eg = tether.ErrorGroup("two things failed", { e1, e2 })
        return {
          msg = eg.message, n = eg.errors.n, first = eg.errors[1] == e1, second = eg.errors[2] == e2,
          is_group = tether.ErrorGroup:is(eg), is_error = tether.Error:is(eg),
        }
      end)
      assert.same({ msg = "two things failed", n = 2, first = true, second = true, is_group = true, is_error = true }, r)
    end)

    it("honours errors.n so nil errors are counted", function()
      local n, a, b, c = tether.run(function()
        local eg = tether.ErrorGroup("m", { n = 3, "a", nil, "c" })
        return eg.errors.n, eg.errors[1], eg.errors[2], eg.errors[3]
      end)
      assert.equal(3, n)
      assert.equal("a", a)
      assert.is_nil(b)
      assert.equal("c", c)
    end)
  end)

  describe("from a task group", function()
    it("keeps plain Lua error values exactly as raised, counting nil, in the order raised", function()
      local tbl = { reason = "my table" }
      local eg = tether.run(function()
        local ok, eg = pcall(tether.with_group, function(g)
          g:spawn(function() error("no position", 0) end)
          g:spawn(function() error(nil) end)
          g:spawn(function() error(42) end)
          g:spawn(function() error(tbl) end)
          g:spawn(function() error(false) end)
          g:spawn(function() error(2.5) end)
          g:spawn(function() error("with position") end)
        end)
        assert(not ok, "with_group should have raised")
        return eg
      end)
      assert.is_true(tether.ErrorGroup:is(eg))
      assert.equal(7, eg.errors.n)
      assert.equal("no position", eg.errors[1])
      assert.is_nil(eg.errors[2])
      assert.equal(42, eg.errors[3])
      assert.equal("integer", math.type(eg.errors[3]))
      assert.is_true(rawequal(tbl, eg.errors[4]))
      assert.same({ reason = "my table" }, eg.errors[4])
      assert.equal(false, eg.errors[5])
      assert.equal(2.5, eg.errors[6])
      assert.is_string(eg.errors[7])
      assert.matches("errgroup_spec%.lua:%d+: with position$", eg.errors[7])
    end)

    it("eg:info(i) gives the task name and a traceback of where the error happened", function()
      local eg = tether.run(function()
        local ok, eg = pcall(tether.with_group, function(g)
          g:spawn({ name = "loader" }, function() error("load failed", 0) end)
          g:spawn({ name = "nil-raiser" }, function() error(nil) end)
        end)
        return eg
      end)
      assert.equal(2, eg.errors.n)
      assert.equal("load failed", eg.errors[1])
      assert.is_nil(eg.errors[2])
      local i1, i2 = eg:info(1), eg:info(2)
      assert.is_table(i1)
      assert.is_table(i2)
      assert.equal("loader", i1.task)
      assert.equal("nil-raiser", i2.task)
      assert.is_string(i1.traceback)
      assert.is_string(i2.traceback)
      assert.matches("errgroup_spec.lua", i1.traceback, 1, true)
      assert.matches("errgroup_spec.lua", i2.traceback, 1, true)
    end)

    it("a second failing task's info names that task", function()
      local eg = tether.run(function()
        local ok, eg = pcall(tether.with_group, { policy = "supervisor" }, function(g)
          g:spawn({ name = "first-to-fail" }, function() error("one", 0) end)
          g:spawn({ name = "second-to-fail" }, function() tether.checkpoint(); error("two", 0) end)
        end)
        return eg
      end)
      assert.equal(2, eg.errors.n)
      assert.equal("one", eg.errors[1])
      assert.equal("two", eg.errors[2])
      assert.equal("first-to-fail", eg:info(1).task)
      assert.equal("second-to-fail", eg:info(2).task)
      assert.matches("errgroup_spec.lua", eg:info(2).traceback, 1, true)
    end)

    it("eg:info(i) is nil where nothing is known: groups built by hand, indexes out of range", function()
      local a, b = tether.run(function()
        local eg = tether.ErrorGroup("by hand", { "a" })
        return eg:info(1), eg:info(7)
      end)
      assert.is_nil(a)
      assert.is_nil(b)
    end)

    it("keeps an inner group's ErrorGroup nested inside the outer one", function()
      local eg = tether.run(function()
        local ok, eg = pcall(tether.with_group, function(g)
          g:spawn({ name = "runner" }, function()
            tether.with_group(function(g2)
              g2:spawn({ name = "deep" }, function() error("deep failure", 0) end)
            end)
          end)
        end)
        return eg
      end)
      assert.is_true(tether.ErrorGroup:is(eg))
      assert.equal(1, eg.errors.n)
      local inner = eg.errors[1]
      assert.is_true(tether.ErrorGroup:is(inner))
      assert.equal(1, inner.errors.n)
      assert.equal("deep failure", inner.errors[1])
      assert.equal("deep", inner:info(1).task)
    end)
  end)

  describe("split, subgroup, leaves", function()
    it("split(class) keeps nesting and messages on both sides and the leaves themselves", function()
      local s, match, rest = tether.run(function()
        local s = sample()
        local match, rest = s.outer:split(s.MyErr)
        return s, match, rest
      end)
      assert.same({ msg = "outer msg", n = 2, s.A1, { msg = "inner msg", n = 1, s.A2 } }, shape(match))
      assert.same({ msg = "outer msg", n = 2, { msg = "inner msg", n = 1, s.B1 }, "plain string" }, shape(rest))
      assert.is_true(rawequal(match.errors[1], s.A1))
      assert.is_true(rawequal(match.errors[2].errors[1], s.A2))
      assert.is_true(tether.ErrorGroup:is(match))
      assert.is_true(tether.ErrorGroup:is(rest))
    end)

    it("split gives nil for the side that would be empty", function()
      local r = tether.run(function()
        local s = sample()
        local m1, r1 = s.outer:split(tether.TimeoutError)
        local m2, r2 = s.outer:split(function() return true end)
        return { m1 = m1 == nil, r1 = r1 and shape(r1), m2 = m2 and shape(m2), r2 = r2 == nil, s = s }
      end)
      assert.is_true(r.m1)
      assert.is_true(r.r2)
      local full = shape(r.s.outer)
      assert.same(full, r.r1)
      assert.same(full, r.m2)
    end)

    it("subgroup(matcher) is the matching side of split", function()
      local s, sub, none = tether.run(function()
        local s = sample()
        return s, s.outer:subgroup(s.OtherErr), s.outer:subgroup(tether.TimeoutError)
      end)
      assert.same({ msg = "outer msg", n = 1, { msg = "inner msg", n = 1, s.B1 } }, shape(sub))
      assert.is_nil(none)
    end)

    it("leaves() is the flat list of leaves, depth first", function()
      local s, leaves = tether.run(function()
        local s = sample()
        return s, s.outer:leaves()
      end)
      assert.equal(4, #leaves)
      assert.is_true(rawequal(s.A1, leaves[1]))
      assert.is_true(rawequal(s.B1, leaves[2]))
      assert.is_true(rawequal(s.A2, leaves[3]))
      assert.equal("plain string", leaves[4])
    end)

    it("split keeps the task name and traceback of each leaf", function()
      local eg, match, rest = tether.run(function()
        local MyErr = tether.error_class("MyErr")
        local ok, eg = pcall(tether.with_group, { policy = "supervisor" }, function(g)
          g:spawn({ name = "mine" }, function() error(MyErr("x")) end)
          g:spawn({ name = "other" }, function() error("y", 0) end)
        end)
        local match, rest = eg:split(MyErr)
        return eg, match, rest
      end)
      assert.equal("mine", match:info(1).task)
      assert.matches("errgroup_spec.lua", match:info(1).traceback, 1, true)
      assert.equal("other", rest:info(1).task)
    end)
  end)

  describe("matchers", function()
    it("a class matches instances of it and of its subclasses", function()
      local s, m = tether.run(function()
        local s = sample()
        return s, s.outer:subgroup(s.SubErr)
      end)
      assert.same({ msg = "outer msg", n = 1, { msg = "inner msg", n = 1, s.A2 } }, shape(m))
    end)

    it("a string is a Lua pattern searched in tostring(leaf)", function()
      local r = tether.run(function()
        local eg = tether.ErrorGroup("m", { "error code 17", 42, tether.TimeoutError("slow"), "code x" })
        local function leaves_of(g) return g and g:leaves() or {} end
        return {
          code = leaves_of(eg:subgroup("code %d+")),
          num = leaves_of(eg:subgroup("^42$")),
          cls = #leaves_of(eg:subgroup("^TimeoutError: slow$")),
        }
      end)
      assert.same({ "error code 17" }, r.code)
      assert.same({ 42 }, r.num)
      assert.equal(1, r.cls)
    end)

    it("a predicate gets each leaf and decides", function()
      local seen, m = tether.run(function()
        local seen = {}
        local eg = tether.ErrorGroup("m", { 1, "two", tether.ErrorGroup("in", { 3, "four" }) })
        local m = eg:subgroup(function(leaf)
          seen[#seen + 1] = leaf
          return type(leaf) == "number"
        end)
        return seen, m and shape(m)
      end)
      table.sort(seen, function(a, b) return tostring(a) < tostring(b) end)
      assert.same({ 1, 3, "four", "two" }, seen)
      assert.same({ msg = "m", n = 2, 1, { msg = "in", n = 1, 3 } }, m)
    end)

    it("an array of matchers matches any of them", function()
      local s, m = tether.run(function()
        local s = sample()
        return s, s.outer:subgroup({ s.OtherErr, "^plain" })
      end)
      assert.same({ msg = "outer msg", n = 2, { msg = "inner msg", n = 1, s.B1 }, "plain string" }, shape(m))
    end)

    it("tether.ErrorGroup as a matcher is a clear error", function()
      local msgs = tether.run(function()
        local s = sample()
        return {
          tostring(raised(function() return s.outer:split(tether.ErrorGroup) end)),
          tostring(raised(function() return s.outer:subgroup(tether.ErrorGroup) end)),
          tostring(raised(function() return s.outer:subgroup({ "x", tether.ErrorGroup }) end)),
        }
      end)
      for _, m in ipairs(msgs) do
        assert.matches("ErrorGroup", m, 1, true)
      end
      assert.matches("split", msgs[1], 1, true)
      assert.matches("subgroup", msgs[2], 1, true)
    end)

    it("patterns and predicates never see a Cancelled; only the class Cancelled matches it", function()
      local r = tether.run(function()
        local c
        local scope = tether.cancel_scope({})
        scope:run(function()
          scope:cancel()
          local _
          _, c = pcall(tether.checkpoint)
          error(c)
        end)
        assert(tether.Cancelled:is(c))
        local eg = tether.ErrorGroup("mixed", { c, "ordinary" })
        local saw_cancelled = false
        local pm = eg:subgroup(function(leaf)
          if tether.Cancelled:is(leaf) then saw_cancelled = true end
          return true
        end)
        local sm, srest = eg:split(".*")
        local em = eg:subgroup(tether.Error)
        local cm = eg:subgroup(tether.Cancelled)
        return {
          saw_cancelled = saw_cancelled,
          pm = pm:leaves(), sm = sm:leaves(), srest_is_c = rawequal(srest:leaves()[1], c),
          em = em == nil,
          cm_is_c = cm ~= nil and rawequal(cm:leaves()[1], c) and #cm:leaves() == 1,
        }
      end)
      assert.is_false(r.saw_cancelled)
      assert.same({ "ordinary" }, r.pm)
      assert.same({ "ordinary" }, r.sm)
      assert.is_true(r.srest_is_c)
      assert.is_true(r.em)
      assert.is_true(r.cm_is_c)
    end)
  end)

  describe("tostring", function()
    local function first_line_with(text, needle)
      for line in text:gmatch("[^\n]+") do
        if line:find(needle, 1, true) then return line end
      end
    end
    local function indent(line) return (line:find("%w")) end

    it("renders the whole tree: header, task names, messages, tracebacks, nested groups indented", function()
      local text, eg = tether.run(function()
        local ok, eg = pcall(tether.with_group, { name = "outer-group", policy = "supervisor" }, function(g)
          g:spawn({ name = "alpha" }, function() error("alpha exploded") end)
          g:spawn({ name = "runner" }, function()
            tether.with_group({ name = "inner-group" }, function(g2)
              g2:spawn({ name = "beta" }, function() error("beta exploded") end)
            end)
          end)
        end)
        return tostring(eg), eg
      end)
      assert.matches("^ErrorGroup: ", text)
      assert.matches("2 sub%-error", text)
      for _, needle in ipairs({ "alpha", "alpha exploded", "beta", "beta exploded", "outer-group", "inner-group",
                                "errgroup_spec.lua" }) do
        assert.matches(needle, text, 1, true)
      end
      assert.matches("traceback", text, 1, true)
      local a = first_line_with(text, "alpha exploded")
      local b = first_line_with(text, "beta exploded")
      assert.is_true(indent(b) > indent(a), "the nested leaf is not indented deeper:\n" .. text)
    end)

    it("renders messages holding % signs literally", function()
      local text = tether.run(function()
        return tostring(tether.ErrorGroup("100% %s failed", { "50%d done %%" }))
      end)
      assert.matches("100% %s failed", text, 1, true)
      assert.matches("50%d done %%", text, 1, true)
    end)

    it("copes with deeply nested and very wide groups", function()
      local r = tether.run(function()
        local eg = tether.ErrorGroup("leaf group", { "deep leaf" })
        for i = 1, 300 do eg = tether.ErrorGroup("level " .. i, { eg }) end
        local m, rest = eg:split("deep")
        local wide = {}
        for i = 1, 20000 do wide[i] = i end
        local w = tether.ErrorGroup("wide", wide)
        local even, odd = w:split(function(x) return x % 2 == 0 end)
        return {
          -- rendered 10 levels deep, then counted (as CPython does)
          deep_text = tostring(eg):find("... and 1 more error (nested more than 10 levels deep)", 1, true) ~= nil,
          deep_leaves = #eg:leaves(), deep_match = m ~= nil, deep_rest = rest == nil,
          even = #even:leaves(), odd = #odd:leaves(), wide_n = w.errors.n,
        }
      end)
      assert.same({ deep_text = true, deep_leaves = 1, deep_match = true, deep_rest = true,
                    even = 10000, odd = 10000, wide_n = 20000 }, r)
    end)

    it("renders groups holding nil, numbers, false and tables without failing", function()
      local text = tether.run(function()
        return tostring(tether.ErrorGroup("odd values", { n = 4, nil, 42, false, {} }))
      end)
      assert.matches("^ErrorGroup: odd values", text)
      assert.matches("4 sub%-error", text)
      assert.matches("nil", text, 1, true)
      assert.matches("42", text, 1, true)
      assert.matches("false", text, 1, true)
    end)

    it("an uncaught ErrorGroup at the top of a lua5.4 script prints the tree", function()
      local p = assert(io.popen(fixture_cmd("spec/fixtures/uncaught_group.lua")))
      local out = p:read("a")
      p:close()
      local code = tonumber(out:match("EXIT:(%d+)%s*$"))
      assert.is_true(code ~= nil and code ~= 0 and code ~= 124, "exit status: " .. tostring(code) .. "\n" .. out)
      for _, needle in ipairs({ "ErrorGroup", "fetch_users", "users service down", "parse_orders", "bad order json" }) do
        assert.matches(needle, out, 1, true)
      end
    end)
  end)
end)
