-- A UDP echo server and a client that sends it a few datagrams, each waiting
-- for its echo with a timeout (UDP may lose datagrams: a lost one is counted,
-- not waited for). By default both run in one Copas loop.
--
--   lua examples/udp_echo.lua [--count N]            server and client together
--   lua examples/udp_echo.lua server [--port N] [--duration S]
--   lua examples/udp_echo.lua client --port N [--count N]
--
-- The server prints "listening on 127.0.0.1:<port>" (port 0, the default,
-- picks a free one) and, with --duration, stops by itself after that many
-- seconds. The client prints each echo and ends with "<n>/<count> echoed".

local copas = require "copas"
local socket = require "socket"

local mode = "both"
if arg[1] == "server" or arg[1] == "client" then mode = table.remove(arg, 1) end
local opts = { port = 0, count = 5 }
for i = 1, #arg, 2 do
  local key, v = (arg[i] or ""):match("^%-%-(%a+)$"), tonumber(arg[i + 1])
  if not (key == "port" or key == "count" or key == "duration") or not v then
    io.stderr:write("usage: lua examples/udp_echo.lua [server|client] [--port N]"
      .. " [--count N] [--duration S]\n")
    os.exit(2)
  end
  opts[key] = v
end

-- the server: one handler thread owns the UDP socket and echoes each
-- datagram; stop() removes the server, which closes the socket and wakes
-- the handler (it checks `stopped`: LuaSocket's receivefrom on a closed UDP
-- socket does not reliably report "closed")
local function start_server(port)
  local udp = assert(socket.udp())
  assert(udp:setsockname("127.0.0.1", port))
  local stopped = false
  copas.addserver(udp, function(skt)
    while true do
      local data, ip, from = copas.receivefrom(skt)
      if stopped or not data then return end
      skt:sendto(data, ip, from)
    end
  end, nil, "udp_echo")
  local function stop()
    stopped = true
    copas.removeserver(udp)
  end
  return stop, select(2, udp:getsockname())
end

-- the client: `count` datagrams, each answered or given up after 1 s
local function run_client(port, count, done)
  local c = copas.wrap(socket.udp())
  assert(c:setpeername("127.0.0.1", port))
  c:settimeout(1)
  local echoed = 0
  for i = 1, count do
    local msg = ("datagram %d of %d"):format(i, count)
    c:send(msg)
    local reply, err = c:receive()
    if reply == msg then echoed = echoed + 1 end
    print(("sent %q, got %s"):format(msg, reply and ("%q"):format(reply) or err))
  end
  print(("%d/%d echoed"):format(echoed, count))
  c.socket:close()                         -- a UDP wrapper's close() is a no-op
  if done then done() end
end

io.stdout:setvbuf("line")
if mode == "client" then
  copas.addthread(run_client, opts.port, opts.count)
else
  local stop, port = start_server(opts.port)
  print(("listening on 127.0.0.1:%d"):format(port))
  if mode == "both" then
    copas.addthread(run_client, port, opts.count, stop)
  elseif opts.duration then
    copas.addthread(function()
      copas.pause(opts.duration)
      print(("stopping after %s s"):format(opts.duration))
      stop()
    end)
  end
end
copas.loop()
