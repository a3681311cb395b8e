-- Scheduling workload on luv (peer of workloads/copas/pingpong.lua): each
-- coroutine "pauses" by queueing itself and yielding; one uv idle handle
-- resumes the queued coroutines once per loop iteration.
--   lua pingpong.lua [threads [rounds]]   (10000 100)
local uv = require "luv"

local threads = math.min(tonumber(arg[1]) or 10000, 1000000)
local rounds = math.min(tonumber(arg[2]) or 100, 100000)
local switches = 0

local queue, nq, spare = {}, 0, {}
local yield, resume, running = coroutine.yield, coroutine.resume, coroutine.running

local function pause0()
  nq = nq + 1
  queue[nq] = running()
  yield()
end

local idle = uv.new_idle()
idle:start(function()
  local list, n = queue, nq
  queue, nq, spare = spare, 0, list
  for i = 1, n do
    local co = list[i]
    list[i] = nil
    resume(co)
  end
  if nq == 0 then idle:stop() end
end)

local function player()
  for _ = 1, rounds do
    pause0()
    switches = switches + 1
  end
end

local cpu0, t0 = os.clock(), uv.hrtime()
for _ = 1, threads do
  local co = coroutine.create(player)
  nq = nq + 1
  queue[nq] = co
end
uv.run()
local wall, cpu = (uv.hrtime() - t0) / 1e9, os.clock() - cpu0
print(string.format("threads=%d rounds=%d switches=%d wall_s=%.3f cpu_s=%.3f " ..
  "switches_per_s=%.0f switches_per_cpu_s=%.0f", threads, rounds, switches, wall, cpu,
  switches / wall, switches / cpu))
