-- Line-echo server on cqueues (peer of workloads/copas/echo.lua).
--   lua echo.lua [port [lifetime_s]]
-- Prints "port=<n>" when listening; exits after lifetime_s seconds (default
-- 60) printing "accepted=<n> lines=<n> cpu_s=<s>".
local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local port = tonumber(arg[1]) or 0
local lifetime = math.min(tonumber(arg[2]) or 60, 3600)

local cq = cqueues.new()
local server = assert(socket.listen{ host = "127.0.0.1", port = port, reuseaddr = true,
  backlog = 4096, nodelay = true })
assert(server:listen())
local _, _, bound = server:localname()
print("port=" .. bound)
io.stdout:flush()

local accepted, lines = 0, 0

local function handler(con)
  con:onerror(function(_, _, err) return err end)  -- errors as return values
  con:setmode("tl", "bn")              -- line reads; binary, unbuffered writes
  for line in con:lines("*l") do
    lines = lines + 1
    con:write(line, "\n")
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
  print(string.format("accepted=%d lines=%d cpu_s=%.3f", accepted, lines, os.clock()))
  io.stdout:flush()
  os.exit(0)
end)

assert(cq:loop())
