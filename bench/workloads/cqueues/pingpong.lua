-- Scheduling workload on cqueues (peer of workloads/copas/pingpong.lua):
-- each thread yields to the controller with cqueues.sleep(0) `rounds` times.
--   lua pingpong.lua [threads [rounds]]   (10000 100)
local cqueues = require "cqueues"

local threads = math.min(tonumber(arg[1]) or 10000, 1000000)
local rounds = math.min(tonumber(arg[2]) or 100, 100000)
local switches = 0

local function player()
  for _ = 1, rounds do
    cqueues.sleep(0)
    switches = switches + 1
  end
end

local cq = cqueues.new()
local cpu0, t0 = os.clock(), cqueues.monotime()
for _ = 1, threads do cq:wrap(player) end
assert(cq:loop())
local wall, cpu = cqueues.monotime() - t0, os.clock() - cpu0
print(string.format("threads=%d rounds=%d switches=%d wall_s=%.3f cpu_s=%.3f " ..
  "switches_per_s=%.0f switches_per_cpu_s=%.0f", threads, rounds, switches, wall, cpu,
  switches / wall, switches / cpu))
