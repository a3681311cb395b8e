-- Timer workload on the public Copas API: `threads` threads each pause
-- `rounds` times for a random time in [0, max_pause] seconds.
--   lua sleepers.lua [threads [rounds [max_pause]]]   (100000 4 0.5)
-- Prints "threads=<n> rounds=<n> wall_s=<s> cpu_s=<s> late_mean_ms=<ms>
-- late_p99_ms=<ms> late_max_ms=<ms>"; lateness is wake-up time minus the
-- time asked for. The random sequence is seeded, the same for every peer.
local copas = require "copas"
local socket = require "socket"

local threads = math.min(tonumber(arg[1]) or 100000, 1000000)
local rounds = math.min(tonumber(arg[2]) or 4, 100)
local max_pause = tonumber(arg[3]) or 0.5

local gettime, random = socket.gettime, math.random
math.randomseed(12345)
local late, n = {}, 0

local function sleeper()
  for _ = 1, rounds do
    local d = random() * max_pause
    local due = gettime() + d
    copas.pause(d)
    n = n + 1
    late[n] = gettime() - due
  end
end

local cpu0, t0 = os.clock(), gettime()
for _ = 1, threads do copas.addthread(sleeper) end
copas.loop()
local wall, cpu = gettime() - t0, os.clock() - cpu0

table.sort(late)
local sum = 0
for i = 1, n do sum = sum + late[i] end
print(string.format("threads=%d rounds=%d wakeups=%d wall_s=%.3f cpu_s=%.3f " ..
  "late_mean_ms=%.3f late_p99_ms=%.3f late_max_ms=%.3f", threads, rounds, n,
  wall, cpu, sum / n * 1e3, late[math.max(1, math.ceil(n * 0.99))] * 1e3, late[n] * 1e3))
