-- Minimal HTTP/1.1 keep-alive server on luv (peer of workloads/copas/http.lua).
--   lua http.lua [port [lifetime_s]]
local uv = require "luv"

local port = tonumber(arg[1]) or 0
local lifetime = math.min(tonumber(arg[2]) or 60, 3600)

local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" ..
                 "Content-Length: 13\r\n\r\nHello, World!"

local accepted, requests = 0, 0
local server = uv.new_tcp()
assert(server:bind("127.0.0.1", port))

local function on_connection(err)
  if err then return end
  local client = uv.new_tcp()
  if not server:accept(client) then client:close() return end
  accepted = accepted + 1
  client:nodelay(true)
  local pending = ""
  client:read_start(function(rerr, data)
    if rerr or not data then client:close() return end
    if pending ~= "" then data = pending .. data end
    local pos, n, close = 1, 0, false
    while true do
      local s, e = data:find("\r\n\r\n", pos, true)
      if not s then break end
      if data:sub(pos, s):lower():find("\nconnection: close\r", 1, true) then close = true end
      n = n + 1
      pos = e + 1
    end
    pending = data:sub(pos)
    if n > 0 then
      requests = requests + n
      client:write(n == 1 and RESPONSE or RESPONSE:rep(n))
      if close then client:shutdown(function() client:close() end) end
    end
  end)
end

assert(server:listen(4096, on_connection))
print("port=" .. server:getsockname().port)
io.stdout:flush()

local stop = uv.new_timer()
stop:start(math.floor(lifetime * 1000), 0, function()
  print(string.format("accepted=%d requests=%d cpu_s=%.3f", accepted, requests, os.clock()))
  io.stdout:flush()
  os.exit(0)
end)

uv.run()
