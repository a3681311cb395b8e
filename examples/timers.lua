-- Three threads ticking at different rates for one second; the loop ends by
-- itself once the last of them is done. Each thread sleeps until its next
-- tick's deadline, so the ticks do not drift.
--
--   eval "$(make -s env)"; lua5.4 examples/timers.lua     (or: make example)
local copas = require "copas"

local start = copas.gettime()

local function ticker(name, interval, duration)
  local ticks = math.floor(duration / interval + 0.5)
  for i = 1, ticks do
    copas.pause(start + i * interval - copas.gettime())
    print(("%6.3f s  %-6s tick %d/%d"):format(copas.gettime() - start, name, i, ticks))
  end
end

copas.addthread(ticker, "fast", 0.1, 1.0)
copas.addthread(ticker, "medium", 0.25, 1.0)
copas.addthread(ticker, "slow", 0.5, 1.0)

copas.loop()
print(("all threads done after %.3f s"):format(copas.gettime() - start))
