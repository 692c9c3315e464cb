-- pipeline.lua: a bounded pipeline on tether channels: read lines -> transform in N workers -> write in order.
--
--   lua5.4 examples/pipeline.lua                 the demo: a clean run, then a failing one
--   lua5.4 examples/pipeline.lua ok [FILE]       transform FILE (default: generated lines)
--   lua5.4 examples/pipeline.lua fail            a worker fails on line 13
--
-- Stages and channels:
--
--   reader --lines(4)--> worker 1..N --results(4)--> writer
--
-- * Back-pressure: the channels are small. When the workers are slower than
--   the reader, `lines` fills up and the reader waits in send; a monitor
--   prints how full each channel is and who waits.
-- * Clean shutdown: the reader closes `lines` when the input ends. Each
--   worker's `for line in lines` loop then ends once the buffer is drained;
--   each worker closes its clone of the results sender, and when the last
--   one is closed the writer's loop ends. Nothing is lost, nothing hangs.
-- * Order: workers finish out of order; results carry their line number and
--   the writer holds back early arrivals until the gap is filled.
-- * Errors: a worker that fails raises; the task group cancels every other
--   stage (blocked sends and receives included) and raises one ErrorGroup.

local tether = require("tether")

local TransformError = tether.error_class("TransformError")

local WORKERS = 3

-- The work of one line: slow enough to show back-pressure (the real thing
-- would parse, fetch, compute ...). Fails on the line given to fail_on.
local function transform(n, line, fail_on)
  tether.sleep(0.002 + (n * 7 % 5) * 0.002)
  if n == fail_on then
    error(TransformError("cannot transform line " .. n, { line = line }))
  end
  return ("%3d  %-28s %2d words"):format(n, line:upper(), select(2, line:gsub("%S+", "")))
end

local function input_lines(path)
  if path then
    local out = {}
    for line in assert(io.lines(path)) do out[#out + 1] = line end
    return out
  end
  local words = { "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf" }
  local out = {}
  for i = 1, 24 do
    local parts = {}
    for k = 1, 1 + i % 4 do parts[k] = words[(i * k) % #words + 1] end
    out[i] = table.concat(parts, " ")
  end
  return out
end

-- One line of channel state: "lines 4/4 (reader waits)".
local function state(name, ch)
  local s = ch:statistics()
  local who = {}
  if s.tasks_waiting_send > 0 then who[#who + 1] = s.tasks_waiting_send .. " waiting to send" end
  if s.tasks_waiting_receive > 0 then who[#who + 1] = s.tasks_waiting_receive .. " waiting to receive" end
  return ("%s %d/%d%s"):format(name, s.current_buffer_used, s.max_buffer_size,
    #who > 0 and " (" .. table.concat(who, ", ") .. ")" or "")
end

-- Runs the pipeline over `lines`; returns the number of lines written.
local function pipeline(lines, fail_on, out)
  local send_lines, recv_lines = tether.channel(4, { name = "lines" })
  local send_results, recv_results = tether.channel(4, { name = "results" })
  local written = 0

  tether.with_group({ name = "pipeline" }, function(g)
    -- the monitor: back-pressure made visible (a daemon: it stops with the work)
    g:spawn({ name = "monitor", daemon = true }, function()
      while true do
        tether.sleep(0.01)
        out(("  [monitor] %s | %s"):format(state("lines", recv_lines), state("results", recv_results)))
      end
    end)

    g:spawn({ name = "reader" }, function()
      local _ <close> = send_lines                    -- closing it is the shutdown signal
      for n, line in ipairs(lines) do
        send_lines:send({ n = n, line = line })       -- waits while the workers are behind
      end
    end)

    for w = 1, WORKERS do
      local recv, send = recv_lines:clone(), send_results:clone()
      g:spawn({ name = "worker " .. w }, function()
        local _ <close> = recv
        local _ <close> = send
        for item in recv do
          send:send({ n = item.n, text = transform(item.n, item.line, fail_on) })
        end
      end)
    end
    -- the workers hold their own clones: close the originals
    recv_lines:close()
    send_results:close()

    g:spawn({ name = "writer" }, function()
      local _ <close> = recv_results
      local pending, next_n = {}, 1
      for r in recv_results do
        pending[r.n] = r.text
        while pending[next_n] do               -- write in input order
          out(pending[next_n])
          pending[next_n] = nil
          next_n = next_n + 1
          written = written + 1
        end
      end
    end)
  end)
  return written
end

local function run(scenario, path)
  local lines = input_lines(path)
  print(("== %s: %d lines, %d workers, channels of 4"):format(scenario, #lines, WORKERS))
  local fail_on = scenario == "fail" and 13 or nil
  local written = tether.run(function()
    return tether.catch(function()
      return pipeline(lines, fail_on, print)
    end, {
      { TransformError, function(eg)
        for _, e in ipairs(eg:leaves()) do
          print(("  pipeline stopped: %s (line %q)"):format(e.message, e.line))
        end
        print("  every stage was cancelled; one ErrorGroup held the failure:")
        print("    " .. (tostring(eg):gsub("\n", "\n    ")))
      end },
    })
  end)
  if written then print(("  %d lines written, in order; every channel closed"):format(written)) end
end

local scenario, path = arg[1], arg[2]
if scenario == nil then
  run("ok")
  run("fail")
elseif scenario == "ok" or scenario == "fail" then
  run(scenario, path)
else
  io.stderr:write("usage: lua5.4 examples/pipeline.lua [ok [FILE] | fail]\n")
  os.exit(2)
end
