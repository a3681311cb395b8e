-- Scheduling workload on the public Copas API: `threads` threads each call
-- copas.pause(0) `rounds` times, so control passes round-robin between them.
--   lua pingpong.lua [threads [rounds]]   (10000 100)
-- Prints "threads=<n> rounds=<n> switches=<n> wall_s=<s> cpu_s=<s>
-- switches_per_s=<n> switches_per_cpu_s=<n>" (the second is less sensitive
-- to other load on the machine).
local copas = require "copas"
local socket = require "socket"

local threads = math.min(tonumber(arg[1]) or 10000, 1000000)
local rounds = math.min(tonumber(arg[2]) or 100, 100000)
local switches = 0

local function player()
  for _ = 1, rounds do
    copas.pause(0)
    switches = switches + 1
  end
end

local cpu0, t0 = os.clock(), socket.gettime()
for _ = 1, threads do copas.addthread(player) end
copas.loop()
local wall, cpu = socket.gettime() - t0, os.clock() - cpu0
print(string.format("threads=%d rounds=%d switches=%d wall_s=%.3f cpu_s=%.3f " ..
  "switches_per_s=%.0f switches_per_cpu_s=%.0f", threads, rounds, switches, wall, cpu,
  switches / wall, switches / cpu))
