-- A minimal HTTP/1.1 server: GET and HEAD, keep-alive, Content-Length,
-- 404, "Connection: close", and a header-read deadline per request, so a
-- client that sends its headers too slowly (slowloris) is dropped instead
-- of holding a connection for ever.
--
--   lua examples/http_server.lua [--port N] [--timeout S] [--duration S] [--log]
--                                [--reuseport]
--
-- Options may also come from the environment: HTTP_PORT, HTTP_TIMEOUT,
-- HTTP_DURATION. Defaults: port 0 (any free port, printed at start), a
-- 10 s header deadline, no duration (runs until interrupted). --log prints
-- one line per request and per dropped connection. --reuseport lets several
-- copies serve one port (docs/guide/reuseport.md). Try it:
--
--   curl -v http://127.0.0.1:<port>/ http://127.0.0.1:<port>/nothing
--
-- Loaded with dofile (or require), it returns { start = start } instead of
-- running: start(opts) serves in the current Copas loop (see below).

local copas = require "copas"
local socket = require "socket"

local PAGES = {
  ["/"] = "hello from copas\n",
  ["/about"] = "a minimal HTTP/1.1 server on the Copas API\n",
}

local REASONS = { [200] = "OK", [400] = "Bad Request", [404] = "Not Found",
  [405] = "Method Not Allowed", [413] = "Payload Too Large" }

local MAX_HEADERS = 100
local MAX_BODY = 64 * 1024

-- reads one line before `deadline`; the socket's receive timeout is the
-- time left, so a client trickling bytes cannot push the deadline back
local function line_before(skt, deadline)
  local left = deadline - copas.gettime()
  if left <= 0 then return nil, "timeout" end
  skt:settimeouts(nil, nil, left)
  return skt:receive("*l")
end

-- reads a request (request line and headers) before the deadline
-- @return request table | nil, "timeout" | "closed" | status code
local function read_request(skt, timeout)
  local deadline = copas.gettime() + timeout
  local line, err = line_before(skt, deadline)
  if not line then return nil, err end
  local method, target, version = line:match("^(%u+) (%S+) HTTP/(%d%.%d)$")
  if not method then return nil, 400 end
  local req = { method = method, path = target:gsub("%?.*", ""), version = version,
    headers = {} }
  for _ = 1, MAX_HEADERS do
    line, err = line_before(skt, deadline)
    if not line then return nil, err end
    if line == "" then return req end
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then return nil, 400 end
    req.headers[name:lower()] = value
  end
  return nil, 400
end

-- does the client want the connection kept open after this request?
local function keep_alive(req)
  local conn = (req.headers.connection or ""):lower()
  if req.version == "1.0" then return conn:find("keep%-alive") ~= nil end
  return not conn:find("close")
end

-- the status and body for a request (its body, if any, already read)
local function route(pages, req)
  if req.method ~= "GET" and req.method ~= "HEAD" then return 405 end
  if pages[req.path] then return 200, pages[req.path] end
  return 404
end

local function respond(skt, status, body, keep, head_only)
  local head = ("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
    .. "Connection: %s\r\n\r\n"):format(status, REASONS[status], #body,
    keep and "keep-alive" or "close")
  return skt:send(head_only and head or head .. body)
end

-- Serves HTTP on a new listening socket in the current Copas loop.
-- opts: host (default "127.0.0.1"), port (default 0), timeout (header
-- deadline in seconds, default 10), pages (path -> body), log (function
-- called with one line of text per event), backlog (default 1024),
-- reuseport (true: share the port with other processes, SO_REUSEPORT).
-- @return server object: port, stats { requests, dropped }, stop()
local function start(opts)
  opts = opts or {}
  local timeout = opts.timeout or 10
  local pages = opts.pages or PAGES
  local log = opts.log or function() end
  local srv = {
    stats = { requests = 0, dropped = 0 },
    conns = {},                  -- open client sockets, closed by stop()
  }
  local listener = assert(socket.tcp4())
  assert(listener:setoption("reuseaddr", true))
  if opts.reuseport then assert(listener:setoption("reuseport", true)) end
  assert(listener:bind(opts.host or "127.0.0.1", opts.port or 0))
  assert(listener:listen(opts.backlog or 1024))
  srv.port = select(2, listener:getsockname())

  local function serve(skt)
    srv.conns[skt] = true
    skt:settimeouts(nil, 10, nil)          -- a stuck reader does not block sends for ever
    local ip, port = skt:getpeername()     -- nil, err if the client left already
    local peer = tostring(ip) .. ":" .. tostring(port)
    while true do
      local req, err = read_request(skt, timeout)
      if not req then
        if err == "timeout" then
          srv.stats.dropped = srv.stats.dropped + 1
          log("dropped " .. peer .. ": no complete request headers within " .. timeout .. " s")
        elseif type(err) == "number" then
          respond(skt, err, REASONS[err] .. "\n", false)
        end
        break
      end
      srv.stats.requests = srv.stats.requests + 1
      local keep = keep_alive(req)
      local length = tonumber(req.headers["content-length"] or 0)
      local status, body
      if not length or length < 0 then
        status, keep = 400, false
      elseif length > MAX_BODY then
        status, keep = 413, false
      else
        skt:settimeouts(nil, nil, timeout)
        if length > 0 and not skt:receive(length) then break end   -- no body: give up
        status, body = route(pages, req)
      end
      body = body or REASONS[status] .. "\n"
      log(("%s %s %s -> %d"):format(peer, req.method, req.path, status))
      if not respond(skt, status, body, keep, req.method == "HEAD") or not keep then break end
    end
    srv.conns[skt] = nil
  end                                      -- autoclose closes the connection

  copas.addserver(listener, copas.handler(serve), nil, "http_server")

  -- stops accepting and closes every open connection
  function srv.stop()
    copas.removeserver(listener)
    for skt in pairs(srv.conns) do skt:close() end
  end
  return srv
end

-- run as a script (not loaded as a module)?
local source = debug.getinfo(1, "S").source
if not (arg and arg[0] and source == "@" .. arg[0]) then
  return { start = start, pages = PAGES }
end

local opts = {
  port = tonumber(os.getenv("HTTP_PORT") or 0),
  timeout = tonumber(os.getenv("HTTP_TIMEOUT") or 10),
}
local duration = tonumber(os.getenv("HTTP_DURATION") or "")
local i = 1
while arg[i] do
  local a, v = arg[i], tonumber(arg[i + 1])
  if a == "--log" or a == "--reuseport" then
    if a == "--log" then opts.log = print else opts.reuseport = true end
    i = i + 1
  elseif (a == "--port" or a == "--timeout" or a == "--duration") and v then
    if a == "--duration" then duration = v else opts[a:sub(3)] = v end
    i = i + 2
  else
    io.stderr:write("usage: lua examples/http_server.lua [--port N] [--timeout S]"
      .. " [--duration S] [--log] [--reuseport]\n")
    os.exit(2)
  end
end

io.stdout:setvbuf("line")
local server = start(opts)
print(("listening on 127.0.0.1:%d (header deadline %s s)"):format(server.port, opts.timeout))
if duration then
  copas.addthread(function()
    copas.pause(duration)
    server.stop()
    print(("stopping after %s s: %d requests, %d dropped"):format(duration,
      server.stats.requests, server.stats.dropped))
  end)
end
copas.loop()
