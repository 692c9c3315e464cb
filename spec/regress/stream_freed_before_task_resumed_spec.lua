-- Regression: a writer blocked on a stream that another task closed resumed on the freed stream (use after free, seen by ASan).
--
-- Closing a stream whose write waits makes libuv call the write's callback
-- (UV_ECANCELED) and then the close callback, which frees the stream, in
-- the same loop phase: the writer's continuation runs after both.  It must
-- find the stream through its userdata, and raise ClosedResourceError.
local tether = require("tether")

describe("regress: stream closed under a blocked writer", function()
  it("raises ClosedResourceError in the writer", function()
    local e = tether.run(function()
      local l <close> = tether.tcp.listen(0)
      local c <close> = tether.tcp.connect("127.0.0.1", l.port)
      local s <close> = l:accept()
      local err
      tether.with_group(function(g)
        g:spawn(function()
          local ok, x = pcall(function()
            local chunk = string.rep("w", 1 << 20)
            for _ = 1, 1000 do c:write(chunk) end     -- nobody reads: blocks
          end)
          err = not ok and x
        end)
        tether.sleep(0.05)
        c:close()
      end)
      return err
    end)
    assert.is_true(tether.ClosedResourceError:is(e), tostring(e))
  end)

  it("raises ClosedResourceError in a reader too", function()
    local e = tether.run(function()
      local a, b = tether.stream_pair()
      local err
      tether.with_group(function(g)
        g:spawn(function()
          local ok, x = pcall(a.read, a)
          err = not ok and x
        end)
        tether.sleep(0.01)
        a:close()
      end)
      b:close()
      return err
    end)
    assert.is_true(tether.ClosedResourceError:is(e), tostring(e))
  end)
end)
