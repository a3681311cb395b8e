-- Timer workload on luv (peer of workloads/copas/sleepers.lua): each
-- "thread" is a coroutine that sleeps by starting its own uv timer and
-- yielding until the timer resumes it (luv timers have 1 ms resolution).
--   lua sleepers.lua [threads [rounds [max_pause]]]   (100000 4 0.5)
local uv = require "luv"

local threads = math.min(tonumber(arg[1]) or 100000, 1000000)
local rounds = math.min(tonumber(arg[2]) or 4, 100)
local max_pause = tonumber(arg[3]) or 0.5

local function gettime() return uv.hrtime() / 1e9 end
local random = math.random
math.randomseed(12345)
local late, n = {}, 0

local function sleeper()
  local co = coroutine.running()
  local timer = uv.new_timer()
  local function wake() coroutine.resume(co) end
  for _ = 1, rounds do
    local d = random() * max_pause
    local due = gettime() + d
    uv.update_time()               -- timers count from the cached loop time
    timer:start(math.floor(d * 1000 + 0.5), 0, wake)
    coroutine.yield()
    n = n + 1
    late[n] = gettime() - due
  end
  timer:close()
end

local cpu0, t0 = os.clock(), gettime()
for _ = 1, threads do coroutine.wrap(sleeper)() end
uv.run()
local wall, cpu = gettime() - t0, os.clock() - cpu0

table.sort(late)
local sum = 0
for i = 1, n do sum = sum + late[i] end
print(string.format("threads=%d rounds=%d wakeups=%d wall_s=%.3f cpu_s=%.3f " ..
  "late_mean_ms=%.3f late_p99_ms=%.3f late_max_ms=%.3f", threads, rounds, n,
  wall, cpu, sum / n * 1e3, late[math.max(1, math.ceil(n * 0.99))] * 1e3, late[n] * 1e3))
