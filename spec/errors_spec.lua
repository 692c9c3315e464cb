-- Error classes: error_class, inheritance, fields, tostring, the built-in classes and Cancelled (contract §3).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local raised, capture_cancelled = support.raised, support.capture_cancelled

describe("error classes", function()
  it("error_class makes a class whose instances carry message, fields and a readable tostring", function()
    local r = tether.run(function()
      local MyErr = tether.error_class("MyErr")
      local e = MyErr("bad value", { field = 7, other = "x" })
      return {
        name = MyErr.name,
        message = e.message,
        field = e.field,
        other = e.other,
        text = tostring(e),
        bare = tostring(MyErr()),
      }
    end)
    assert.same({
      name = "MyErr",
      message = "bad value",
      field = 7,
      other = "x",
      text = "MyErr: bad value",
      bare = "MyErr",
    }, r)
  end)

  it("a class made without a parent derives from tether.Error", function()
    local r = tether.run(function()
      local MyErr = tether.error_class("MyErr")
      local e = MyErr("x")
      return { tether.Error:is(e), MyErr:is(e), MyErr:is(tether.Error("plain")) }
    end)
    assert.same({ true, true, false }, r)
  end)

  it(":is matches the class and its subclasses, never parents or siblings", function()
    local r = tether.run(function()
      local A = tether.error_class("A")
      local B = tether.error_class("B", A)
      local C = tether.error_class("C", B)
      local Sib = tether.error_class("Sib", A)
      local a, b, c, s = A("a"), B("b"), C("c"), Sib("s")
      return {
        A_c = A:is(c), B_c = B:is(c), C_c = C:is(c), Error_c = tether.Error:is(c),
        C_b = C:is(b), C_a = C:is(a), B_a = B:is(a),
        B_s = B:is(s), Sib_b = Sib:is(b), A_s = A:is(s),
      }
    end)
    assert.same({
      A_c = true, B_c = true, C_c = true, Error_c = true,
      C_b = false, C_a = false, B_a = false,
      B_s = false, Sib_b = false, A_s = true,
    }, r)
  end)

  it(":is answers false for values that are not instances", function()
    local r = tether.run(function()
      local MyErr = tether.error_class("MyErr")
      local out = {}
      for i, v in ipairs({ "MyErr: x", 42, true, {}, { message = "x" }, print, MyErr }) do
        out[i] = MyErr:is(v) or tether.Error:is(v)
      end
      out[#out + 1] = MyErr:is(nil) or tether.Error:is(nil)
      return out
    end)
    assert.same({ false, false, false, false, false, false, false, false }, r)
  end)

  it("two classes with the same name are still different classes", function()
    local r = tether.run(function()
      local D1 = tether.error_class("Dup")
      local D2 = tether.error_class("Dup")
      return { D1:is(D2("x")), D2:is(D1("x")), D1:is(D1("x")) }
    end)
    assert.same({ false, false, true }, r)
  end)

  it("instances keep their identity through error/pcall and through tether.run", function()
    local MyErr
    local inner, e_run
    e_run = raised(tether.run, function()
      MyErr = tether.error_class("MyErr")
      local e = MyErr("boom")
      inner = e
      local caught = raised(error, e)
      assert(rawequal(caught, e), "pcall changed the error value")
      error(e)
    end)
    assert.is_true(rawequal(inner, e_run))
    assert.is_true(MyErr:is(e_run))
    assert.equal("MyErr: boom", tostring(e_run))
  end)

  describe("built-in classes", function()
    it("TimeoutError, IOError and ErrorGroup derive from tether.Error", function()
      local r = tether.run(function()
        local t = tether.TimeoutError("too slow")
        local io = tether.IOError("connect failed", { code = "ECONNREFUSED" })
        local eg = tether.ErrorGroup("several", { "a" })
        return {
          t = tether.Error:is(t), io = tether.Error:is(io), eg = tether.Error:is(eg),
          t_own = tether.TimeoutError:is(t), io_own = tether.IOError:is(io), eg_own = tether.ErrorGroup:is(eg),
          t_io = tether.IOError:is(t), io_t = tether.TimeoutError:is(io),
          code = io.code,
          t_text = tostring(t), io_text = tostring(io),
        }
      end)
      assert.same({
        t = true, io = true, eg = true,
        t_own = true, io_own = true, eg_own = true,
        t_io = false, io_t = false,
        code = "ECONNREFUSED",
        t_text = "TimeoutError: too slow", io_text = "IOError: ECONNREFUSED: connect failed",
      }, r)
    end)

    it("the built-in classes have their names", function()
      local r = tether.run(function()
        return {
          tether.Error.name, tether.TimeoutError.name, tether.IOError.name,
          tether.ErrorGroup.name, tether.Cancelled.name,
        }
      end)
      assert.same({ "Error", "TimeoutError", "IOError", "ErrorGroup", "Cancelled" }, r)
    end)

    it("a user class can derive from a built-in class", function()
      local r = tether.run(function()
        local NetErr = tether.error_class("NetErr", tether.IOError)
        local e = NetErr("reset", { code = "ECONNRESET" })
        return { tether.IOError:is(e), tether.Error:is(e), NetErr:is(e), tether.TimeoutError:is(e), e.code, tostring(e) }
      end)
      assert.same({ true, true, true, false, "ECONNRESET", "NetErr: ECONNRESET: reset" }, r)
    end)
  end)

  describe("Cancelled", function()
    it("is not a subclass of tether.Error, so matching Error never catches it", function()
      local r = tether.run(function()
        local e = capture_cancelled("stop")
        local MyErr = tether.error_class("MyErr")
        return {
          cancelled = tether.Cancelled:is(e),
          error = tether.Error:is(e),
          myerr = MyErr:is(e),
          timeout = tether.TimeoutError:is(e),
          group = tether.ErrorGroup:is(e),
        }
      end)
      assert.same({ cancelled = true, error = false, myerr = false, timeout = false, group = false }, r)
    end)

    it("no tether.Error instance is a Cancelled", function()
      local r = tether.run(function()
        local MyErr = tether.error_class("MyErr")
        return {
          tether.Cancelled:is(tether.Error("x")),
          tether.Cancelled:is(MyErr("x")),
          tether.Cancelled:is(tether.TimeoutError("x")),
          tether.Cancelled:is("Cancelled: x"),
        }
      end)
      assert.same({ false, false, false, false }, r)
    end)

    it("tells why: reason from the canceller, text starting with Cancelled", function()
      local reason, text, source = tether.run(function()
        local e = capture_cancelled("shutting down")
        return e.reason, tostring(e), e.source
      end)
      assert.equal("shutting down", reason)
      assert.matches("^Cancelled", text)
      assert.matches("shutting down", text, 1, true)
      assert.is_nil(source)
    end)

    it("a deadline's Cancelled says the deadline was exceeded", function()
      local reason = tether.run(function()
        local reason
        tether.move_on_after(0.01, function()
          local ok, e = pcall(tether.sleep, 10)
          reason = e.reason
          error(e)
        end)
        return reason
      end)
      assert.is_string(reason)
      assert.matches("deadline", reason, 1, true)
    end)

    it("a sibling's failure names that sibling as the source", function()
      local source, reason = tether.run(function()
        local source, reason
        pcall(tether.with_group, function(g)
          g:spawn({ name = "victim" }, function()
            local ok, e = pcall(tether.sleep, 10)
            source, reason = e.source, e.reason
            error(e)
          end)
          g:spawn({ name = "culprit" }, function()
            tether.checkpoint()
            error("culprit broke", 0)
          end)
        end)
        return source, reason
      end)
      assert.equal("culprit", source)
      assert.is_string(reason)
      assert.matches("culprit", reason, 1, true)
    end)
  end)
end)
