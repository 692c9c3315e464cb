-- .ci/count.lua: a busted output handler that prints like busted's usual
-- terminal handler and keeps the file named by $TETHER_COUNT_FILE up to date:
--   line 1: "PASSED FAILED" so far (errors outside tests count as failed)
--   line 2: the test running now, if any
-- so .ci/suite can print the closing tally, and name the test that was running
-- when the process died (a crash, or a sanitizer halting it).
local term = require 'term'

return function(options)
  local busted = require 'busted'
  local isatty = io.type(io.stdout) == 'file' and term.isatty(io.stdout)
  local inner = require('busted.outputHandlers.' .. (isatty and 'utfTerminal' or 'plainTerminal'))(options)
  local path = os.getenv('TETHER_COUNT_FILE')
  local running = ''

  -- Subscribed after the base handler's counters, so they are current here.
  local function save()
    if path then
      local f = assert(io.open(path, 'w'))
      f:write(inner.successesCount, ' ', inner.failuresCount + inner.errorsCount, '\n', running, '\n')
      f:close()
    end
    return nil, true
  end

  busted.subscribe({ 'test', 'start' }, function(element)
    running = inner.getFullName(element)
    return save()
  end)
  busted.subscribe({ 'test', 'end' }, function()
    running = ''
    return save()
  end)
  busted.subscribe({ 'suite', 'start' }, save)
  busted.subscribe({ 'error' }, save)
  busted.subscribe({ 'failure' }, save)
  return inner
end
