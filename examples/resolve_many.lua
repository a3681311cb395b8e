-- Resolves many host names on the resolver's threads while an echo server
-- in the same loop keeps answering; prints how long the lookups took and
-- the slowest echo round trip seen meanwhile.
--
--   lua examples/resolve_many.lua [count [name ...]]
--
-- Defaults: 1000 lookups of names from the hosts file ("localhost"), so
-- the example needs no network. Pass your own names to try real DNS.

local copas = require "copas"
local resolver = require "copas.resolver"
local socket = require "socket"

local count = tonumber(arg[1]) or 1000
local names = { select(2, ...) }
if #names == 0 then names = { "localhost" } end

-- an echo server on a free loopback port
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
copas.addserver(server, copas.handler(function(skt)
  while true do
    local line = skt:receive("*l")
    if not line then return end
    skt:send(line .. "\n")
  end
end))

local resolved, failed, finished = 0, 0, false
local errors = {}

copas.addthread(function()
  local t0 = copas.gettime()
  local left = count
  for i = 1, count do
    copas.addthread(function()
      local addrs, err = resolver.resolve(names[(i - 1) % #names + 1])
      if addrs then
        resolved = resolved + 1
      else
        failed = failed + 1
        errors[err] = (errors[err] or 0) + 1
      end
      left = left - 1
      if left == 0 then
        finished = true
        print(("%d lookups in %.3f s: %d resolved, %d failed"):format(
          count, copas.gettime() - t0, resolved, failed))
        for msg, n in pairs(errors) do print(("  %d x %s"):format(n, msg)) end
      end
    end)
  end
end)

-- the echo client: round trips until the lookups are done
copas.addthread(function()
  local client = copas.wrap(socket.tcp())
  assert(client:connect("127.0.0.1", port))
  local worst, trips = 0, 0
  while not finished do
    local t0 = copas.gettime()
    client:send("ping\n")
    assert(client:receive("*l") == "ping")
    local dt = copas.gettime() - t0
    if dt > worst then worst = dt end
    trips = trips + 1
    copas.pause(0.001)
  end
  client:close()
  print(("%d echo round trips meanwhile, the slowest %.1f ms"):format(trips, worst * 1000))
  copas.removeserver(server)
end)

copas.loop()
