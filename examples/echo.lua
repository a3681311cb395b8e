-- A line echo server.
--
--   lua examples/echo.lua [port [seconds]]
--
-- Listens on 127.0.0.1, on `port` (default 0: any free port), and prints
-- "listening on 127.0.0.1:<port>". Every line a client sends comes back
-- unchanged; a client that sends "quit" is disconnected. With `seconds`, the
-- server stops by itself after that many seconds; otherwise it runs until
-- interrupted. Try it with `nc 127.0.0.1 <port>`.

local copas = require "copas"
local socket = require "socket"

local port = tonumber(arg[1] or 0)
local lifetime = tonumber(arg[2])
if not port or (arg[2] and not lifetime) then
  io.stderr:write("usage: lua examples/echo.lua [port [seconds]]\n")
  os.exit(2)
end

local server = assert(socket.bind("127.0.0.1", port))
local ip, bound = server:getsockname()
print(("listening on %s:%s"):format(ip, bound))
io.stdout:flush()

-- one thread per client: echo each line until the client quits or leaves
local function echo(client)
  while true do
    local line, err = client:receive("*l")
    if not line then
      if err ~= "closed" then print("receive failed: " .. err) end
      return
    end
    if line == "quit" then return end
    local ok, serr = client:send(line .. "\n")
    if not ok then
      print("send failed: " .. serr)
      return
    end
  end
end

copas.addserver(server, copas.handler(echo), nil, "echo")

if lifetime then
  copas.addthread(function()
    copas.pause(lifetime)
    print("stopping after " .. lifetime .. " s")
    copas.removeall()
  end)
end

copas.loop()
