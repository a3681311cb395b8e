-- Minimal HTTP/1.1 keep-alive server on cqueues (peer of workloads/copas/http.lua).
--   lua http.lua [port [lifetime_s]]
local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local port = tonumber(arg[1]) or 0
local lifetime = math.min(tonumber(arg[2]) or 60, 3600)

local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" ..
                 "Content-Length: 13\r\n\r\nHello, World!"

local cq = cqueues.new()
local server = assert(socket.listen{ host = "127.0.0.1", port = port, reuseaddr = true,
  backlog = 4096, nodelay = true })
assert(server:listen())
local _, _, bound = server:localname()
print("port=" .. bound)
io.stdout:flush()

local accepted, requests = 0, 0

local function handler(con)
  con:onerror(function(_, _, err) return err end)  -- errors as return values
  con:setmode("tl", "bn")              -- line reads; binary, unbuffered writes
  while true do
    local line = con:read("*l")
    if not line then break end
    local close = false
    repeat
      local h = con:read("*l")
      if not h then con:close() return end
      h = h:gsub("\r$", "")
      if h:lower() == "connection: close" then close = true end
    until h == ""
    requests = requests + 1
    if not con:write(RESPONSE) or close then break end
  end
  con:close()
end

cq:wrap(function()
  for con in server:clients() do
    accepted = accepted + 1
    cq:wrap(function() pcall(handler, con) con:close() end)
  end
end)

cq:wrap(function()
  cqueues.sleep(lifetime)
  print(string.format("accepted=%d requests=%d cpu_s=%.3f", accepted, requests, os.clock()))
  io.stdout:flush()
  os.exit(0)
end)

assert(cq:loop())
