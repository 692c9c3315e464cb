-- one op = spawn a task that sleeps 1..50 ms (N timers pending at once, as in W2)
local tether = require("tether")
local N = tonumber(arg[1])
local sleep = tether.sleep
tether.run(function()
  tether.with_group(function(g)
    for i = 1, N do
      local d = (1 + (i * 7919) % 50) / 1000
      g:spawn(function() sleep(d) end)
    end
  end)
end)
