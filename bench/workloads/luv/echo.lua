-- Line-echo server on luv (peer of workloads/copas/echo.lua), written the
-- way luv programs are: read callbacks, complete lines written back at once.
--   lua echo.lua [port [lifetime_s]]
-- Prints "port=<n>" when listening; exits after lifetime_s seconds (default
-- 60) printing "accepted=<n> lines=<n> cpu_s=<s>".
local uv = require "luv"

local port = tonumber(arg[1]) or 0
local lifetime = math.min(tonumber(arg[2]) or 60, 3600)

local accepted, lines = 0, 0
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
    local last = 0
    for e in data:gmatch("()\n") do
      lines = lines + 1
      last = e
    end
    if last > 0 then
      client:write(last == #data and data or data:sub(1, last))
    end
    pending = data:sub(last + 1)
  end)
end

assert(server:listen(4096, on_connection))
print("port=" .. server:getsockname().port)
io.stdout:flush()

local stop = uv.new_timer()
stop:start(math.floor(lifetime * 1000), 0, function()
  print(string.format("accepted=%d lines=%d cpu_s=%.3f", accepted, lines, os.clock()))
  io.stdout:flush()
  os.exit(0)
end)

uv.run()
