-- A producer and two consumers: a recurring copas.timer puts a job on a
-- copas.queue every 0.05 s; two queue workers take the jobs, each working
-- 0.15 s per job (a pause standing in for I/O). The producer is faster than
-- the two workers together, so jobs pile up in the queue. After the last
-- job the timer cancels itself, and queue:finish() waits until the workers
-- have worked through the backlog.
--
--   lua examples/timers_queues.lua [jobs]            (default 10 jobs)

local copas = require "copas"
local timer = require "copas.timer"
local queue = require "copas.queue"

local jobs = tonumber(arg[1] or 10)
if not jobs or jobs < 1 then
  io.stderr:write("usage: lua examples/timers_queues.lua [jobs]\n")
  os.exit(2)
end

local start = copas.gettime()
local function log(fmt, ...)
  print(("%6.3f s  " .. fmt):format(copas.gettime() - start, ...))
end

local q = queue.new { name = "jobs" }
local done = {}
for w = 1, 2 do
  q:add_worker(function(job)
    log("worker %d starts job %d (queue length %d)", w, job, q:get_size() or 0)
    copas.pause(0.15)
    done[#done + 1] = job
    log("worker %d finished job %d", w, job)
  end)
end

local produced = 0
timer.new {
  name = "producer",
  delay = 0.05,
  recurring = true,
  callback = function(t)
    produced = produced + 1
    q:push(produced)
    if produced == jobs then t:cancel() end    -- no further runs
  end,
}

copas.addthread(function()
  -- wait for the producer, then for the workers to drain the queue
  while produced < jobs do copas.pause(0.05) end
  local ok, err = q:finish(5)
  log("queue finished: %s; %d of %d jobs done", ok and "yes" or err, #done, jobs)
end)

copas.loop()
