-- Fetches URLs with a blocking library (LuaSocket's socket.http) inside
-- worker threads, and processes each response in a Copas thread.
--
--   lua examples/worker_fetch.lua [url ...]
--
-- Without URLs it serves a few pages itself on a free loopback port (from
-- the same Copas loop, which keeps running while the workers block) and
-- fetches those, so it needs no network.

local copas = require "copas"
local worker = require "copas.worker"
local socket = require "socket"

local urls = { ... }

if #urls == 0 then
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local served, to_serve = 0, 8
  copas.addserver(server, copas.handler(function(skt)
    local request = skt:receive("*l") or ""
    repeat local line = skt:receive("*l") until not line or line == ""
    local path = request:match("^GET (%S+)") or "/"
    local body = ("page %s: %s\n"):format(path, ("lorem ipsum dolor sit amet "):rep(#path * 20))
    skt:send("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
      .. #body .. "\r\nConnection: close\r\n\r\n" .. body)
    served = served + 1
    if served == to_serve then copas.removeserver(server) end
  end))
  for i = 1, to_serve do
    urls[i] = ("http://127.0.0.1:%d/%s"):format(port, ("p"):rep(i))
  end
end

-- runs on a pool thread, in the worker's own Lua state: globals only
local function fetch(url)
  local http = require "socket.http"
  http.TIMEOUT = 10
  local body, code, headers = http.request(url)
  if not body then return nil, code end
  return body, code, headers["content-type"]
end

-- a pool of four threads, each with socket.http loaded once up front
local pool = worker.new { threads = 4, init = "require 'socket.http'" }

for _, url in ipairs(urls) do
  copas.addthread(function()
    local body, code, ctype = pool:call(30, fetch, url)
    if not body then
      print(("%s: failed: %s"):format(url, tostring(code)))
      return
    end
    -- the processing happens here, in the Copas thread
    local words = 0
    for _ in body:gmatch("%S+") do words = words + 1 end
    print(("%s: %s, %s, %d bytes, %d words"):format(url, tostring(code), tostring(ctype), #body, words))
  end)
end

copas.loop()
pool:shutdown()
