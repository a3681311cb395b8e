-- A line-based chat server: every line a client sends goes to all the other
-- clients, prefixed with the sender's name. Each client has an outbox (a
-- copas.queue with one writer thread), so a client that reads slowly only
-- delays its own messages, never the sender or the other clients. A client
-- that leaves (or sends "/quit") is removed and the others are told.
--
--   lua examples/chat.lua [--port N] [--duration S]
--
-- Prints "listening on 127.0.0.1:<port>" (port 0, the default, picks a free
-- one). With --duration (or CHAT_DURATION) it stops by itself after that
-- many seconds. Try it with two terminals running `telnet 127.0.0.1 <port>`.

local copas = require "copas"
local socket = require "socket"

local port, duration = 0, tonumber(os.getenv("CHAT_DURATION") or "")
for i = 1, #arg, 2 do
  local v = tonumber(arg[i + 1])
  if arg[i] == "--port" and v then port = v
  elseif arg[i] == "--duration" and v then duration = v
  else
    io.stderr:write("usage: lua examples/chat.lua [--port N] [--duration S]\n")
    os.exit(2)
  end
end

local clients = {}     -- socket -> { name = ..., outbox = queue }
local joined = 0

local function broadcast(from, text)
  for skt, client in pairs(clients) do
    if skt ~= from then client.outbox:push(text) end
  end
end

local function session(skt)
  joined = joined + 1
  local me = { name = "guest" .. joined, outbox = copas.queue.new() }
  me.outbox:add_worker(function(text) skt:send(text) end)
  clients[skt] = me
  me.outbox:push("welcome, you are " .. me.name .. "\n")
  broadcast(skt, "* " .. me.name .. " joined\n")
  print(me.name .. " joined")
  while true do
    local line = skt:receive("*l")
    if not line or line == "/quit" then break end
    broadcast(skt, me.name .. ": " .. line .. "\n")
  end
  -- clean up: no more messages for this client, tell the others
  clients[skt] = nil
  me.outbox:destroy()
  broadcast(skt, "* " .. me.name .. " left\n")
  print(me.name .. " left")
end                    -- autoclose closes the socket when the handler returns

io.stdout:setvbuf("line")
local server = assert(socket.bind("127.0.0.1", port))
print(("listening on 127.0.0.1:%d"):format(select(2, server:getsockname())))
copas.addserver(server, copas.handler(session), nil, "chat")

if duration then
  copas.addthread(function()
    copas.pause(duration)
    print(("stopping after %s s"):format(duration))
    copas.removeserver(server)
    for skt in pairs(clients) do skt:close() end   -- their handlers see "closed"
  end)
end

copas.loop()
