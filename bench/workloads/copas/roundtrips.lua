-- In-process line ping-pong on the public Copas API, for instruction counts:
-- `clients` client threads each send a 64-byte line to an echo server in the
-- same loop and wait for it to come back, `total / clients` times.
--   lua roundtrips.lua [total [clients]]     (20000 10)
-- Nothing is timed: bench/instructions.sh runs it under callgrind twice
-- (the full count and `clients` round trips only) and prints the
-- instructions per round trip, a figure that does not depend on the load
-- of the machine.
local copas = require "copas"
local socket = require "socket"

local total = math.min(tonumber(arg[1]) or 20000, 10000000)
local clients = math.max(1, math.min(tonumber(arg[2]) or 10, 1000))

local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()

copas.addserver(server, function(skt)
  while true do
    local line = copas.receive(skt, "*l")
    if not line then return end
    copas.send(skt, line .. "\n")
  end
end)

local done = 0
for _ = 1, clients do
  copas.addthread(function()
    local s = socket.tcp()
    assert(copas.connect(s, "127.0.0.1", port))
    local msg = string.rep("x", 63) .. "\n"
    for _ = 1, math.floor(total / clients) do
      copas.send(s, msg)
      assert(copas.receive(s, "*l"))
    end
    s:close()
    done = done + 1
    if done == clients then copas.removeserver(server) end
  end)
end
copas.loop()
