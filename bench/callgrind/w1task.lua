-- one op = a W1 task: spawn a task that does sleep(0) once
local tether = require("tether")
local N = tonumber(arg[1])
local sleep = tether.sleep
local function task() sleep(0) end
tether.run(function()
  tether.with_group(function(g)
    for _ = 1, N do g:spawn(task) end
  end)
end)
