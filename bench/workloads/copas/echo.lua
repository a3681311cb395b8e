-- Line-echo server on the public Copas API.
--   lua echo.lua [port [lifetime_s]]
-- Listens on 127.0.0.1:port (0 or absent: a free port), prints "port=<n>",
-- echoes every line back on its connection, and exits by itself after
-- lifetime_s seconds (default 60) printing "accepted=<n> lines=<n> cpu_s=<s>".
-- Also serves the idle-connection and memory measurements: an idle client
-- costs one handler thread blocked in copas.receive plus its socket.
local copas = require "copas"
local socket = require "socket"

local port = tonumber(arg[1]) or 0
local lifetime = math.min(tonumber(arg[2]) or 60, 3600)

local server = assert(socket.bind("127.0.0.1", port, 4096))
print("port=" .. select(2, server:getsockname()))
io.stdout:flush()

local accepted, lines = 0, 0

copas.addserver(server, function(skt)
  accepted = accepted + 1
  skt:setoption("tcp-nodelay", true)
  while true do
    local line = copas.receive(skt, "*l")
    if not line then return end
    lines = lines + 1
    copas.send(skt, line .. "\n")
  end
end)

copas.addthread(function()
  copas.pause(lifetime)
  print(string.format("accepted=%d lines=%d cpu_s=%.3f", accepted, lines, os.clock()))
  io.stdout:flush()
  os.exit(0)
end)

copas.loop()
