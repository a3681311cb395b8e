-- A CPU-heavy job (counting primes with a sieve) on a copas.worker thread,
-- while the Copas loop keeps running: a ticker thread prints a tick every
-- 0.05 s (or --tick S) during the whole job. With --inline the same job runs
-- in a Copas thread instead, and the ticks stop until it is done.
--
--   lua examples/worker_job.lua [--inline] [--tick S] [n]    (default n: 1000000)
--
-- Ends with "<count> primes below <n> in <t> s; <k> ticks meanwhile".

local copas = require "copas"
local worker = require "copas.worker"

local inline, tick, n = false, 0.05, 1000000
do
  local i = 1
  while arg[i] do
    if arg[i] == "--inline" then
      inline, i = true, i + 1
    elseif arg[i] == "--tick" and tonumber(arg[i + 1]) then
      tick, i = tonumber(arg[i + 1]), i + 2
    elseif tonumber(arg[i]) and tonumber(arg[i]) >= 2 then
      n, i = tonumber(arg[i]), i + 1
    else
      io.stderr:write("usage: lua examples/worker_job.lua [--inline] [--tick S] [n]\n")
      os.exit(2)
    end
  end
end

-- runs on a worker thread, in a Lua state of its own: no upvalues
local function count_primes(limit)
  local composite, count = {}, 0
  for i = 2, limit - 1 do
    if not composite[i] then
      count = count + 1
      for j = i * i, limit - 1, i do composite[j] = true end
    end
  end
  return count
end

local start = copas.gettime()
local ticks, busy = 0, true

copas.addthread(function()
  while busy do
    copas.pause(tick)
    if busy then
      ticks = ticks + 1
      print(("%6.3f s  tick %d"):format(copas.gettime() - start, ticks))
    end
  end
end)

copas.addthread(function()
  copas.pause(0)                           -- let the ticker start first
  local count, err
  if inline then
    count = count_primes(n)                -- blocks the loop: no ticks now
  else
    count, err = worker.run(count_primes, n)
  end
  busy = false
  if not count then
    print("job failed: " .. tostring(err))
    return
  end
  print(("%d primes below %d in %.3f s; %d ticks meanwhile"):format(count, n,
    copas.gettime() - start, ticks))
end)

copas.loop()
