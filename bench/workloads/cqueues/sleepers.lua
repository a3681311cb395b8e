-- Timer workload on cqueues (peer of workloads/copas/sleepers.lua).
--   lua sleepers.lua [threads [rounds [max_pause]]]   (100000 4 0.5)
local cqueues = require "cqueues"

local threads = math.min(tonumber(arg[1]) or 100000, 1000000)
local rounds = math.min(tonumber(arg[2]) or 4, 100)
local max_pause = tonumber(arg[3]) or 0.5

local gettime, random = cqueues.monotime, math.random
math.randomseed(12345)
local late, n = {}, 0

local function sleeper()
  for _ = 1, rounds do
    local d = random() * max_pause
    local due = gettime() + d
    cqueues.sleep(d)
    n = n + 1
    late[n] = gettime() - due
  end
end

local cq = cqueues.new()
local cpu0, t0 = os.clock(), gettime()
for _ = 1, threads do cq:wrap(sleeper) end
assert(cq:loop())
local wall, cpu = gettime() - t0, os.clock() - cpu0

table.sort(late)
local sum = 0
for i = 1, n do sum = sum + late[i] end
print(string.format("threads=%d rounds=%d wakeups=%d wall_s=%.3f cpu_s=%.3f " ..
  "late_mean_ms=%.3f late_p99_ms=%.3f late_max_ms=%.3f", threads, rounds, n,
  wall, cpu, sum / n * 1e3, late[math.max(1, math.ceil(n * 0.99))] * 1e3, late[n] * 1e3))
