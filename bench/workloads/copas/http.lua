-- Minimal HTTP/1.1 keep-alive server on the public Copas API (for wrk).
--   lua http.lua [port [lifetime_s]]
-- Answers every request with a fixed 200 response of 13 bytes, keeps the
-- connection open unless the client sent "Connection: close". Prints
-- "port=<n>" when listening; exits by itself after lifetime_s seconds
-- (default 60) printing "accepted=<n> requests=<n> cpu_s=<s>".
local copas = require "copas"
local socket = require "socket"

local port = tonumber(arg[1]) or 0
local lifetime = math.min(tonumber(arg[2]) or 60, 3600)

local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" ..
                 "Content-Length: 13\r\n\r\nHello, World!"

local server = assert(socket.bind("127.0.0.1", port, 4096))
print("port=" .. select(2, server:getsockname()))
io.stdout:flush()

local accepted, requests = 0, 0

copas.addserver(server, function(skt)
  accepted = accepted + 1
  skt:setoption("tcp-nodelay", true)
  while true do
    local line = copas.receive(skt, "*l")
    if not line then return end
    local close = false
    repeat                              -- headers, up to the empty line
      local h = copas.receive(skt, "*l")
      if not h then return end
      if h:lower() == "connection: close" then close = true end
    until h == ""
    requests = requests + 1
    if not copas.send(skt, RESPONSE) or close then return end
  end
end)

copas.addthread(function()
  copas.pause(lifetime)
  print(string.format("accepted=%d requests=%d cpu_s=%.3f", accepted, requests, os.clock()))
  io.stdout:flush()
  os.exit(0)
end)

copas.loop()
