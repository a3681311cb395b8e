-- HTTPS fan-out: fetch a list of items, then the details of every item,
-- at most 10 requests at a time (copas.limit), and give up on whatever is
-- still running at a deadline (copas.removeall drops the stragglers, the
-- queued fetches and everything else in the loop).
--
--   lua examples/https_fanout.lua [--items N] [--slow K] [--deadline S] [--cafile PEM]
--   lua examples/https_fanout.lua https://host/base [--deadline S] [--cafile PEM]
--
-- Without a URL it needs no network: it makes a test CA and a server
-- certificate for 127.0.0.1 with the `openssl` command (in a temporary
-- directory, removed at the end) and serves N items (default 30) over TLS
-- from the same loop; every K-th item (default 10th) answers only after
-- the deadline (default 2 s). The client verifies the server's certificate
-- against that CA, or against --cafile if given (give it any other CA to see
-- the fetches fail). With a URL it fetches <base>/items (item ids separated
-- by white space) and <base>/items/<id>, verifying against the system's CA
-- store unless --cafile is given. Exits with 1 if the list could not be had.

local copas = require "copas"
local http = require "copas.http"
local limit = require "copas.limit"
local ltn12 = require "ltn12"
local socket = require "socket"

local opts = { items = 30, slow = 10, deadline = 2 }
do
  local i = 1
  while arg[i] do
    local key, value = arg[i]:match("^%-%-(%a+)$"), arg[i + 1]
    if key == "cafile" and value then
      opts.cafile, i = value, i + 2
    elseif (key == "items" or key == "slow" or key == "deadline") and tonumber(value) then
      opts[key], i = tonumber(value), i + 2
    elseif not key and not opts.base then
      opts.base, i = (arg[i]:gsub("/$", "")), i + 1
    else
      io.stderr:write("usage: lua examples/https_fanout.lua [base-url] [--items N]"
        .. " [--slow K] [--deadline S] [--cafile PEM]\n")
      os.exit(2)
    end
  end
end

-- runs a shell command, raising with its output when it fails
local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"exit:$?\""))
  local out = p:read("*a")
  p:close()
  if not out:match("exit:0%s*$") then error("command failed: " .. cmd .. "\n" .. out) end
  return out
end

-- a CA and a server certificate for IP 127.0.0.1, in a new temporary directory
local function make_certs()
  local dir = sh("mktemp -d"):match("^(%S+)")
  local c = { dir = dir, ca = dir .. "/ca.pem", cert = dir .. "/server.pem",
    key = dir .. "/server.key", files = {} }
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  sh(("openssl req -x509 %s -keyout %s/ca.key -out %s -days 1 -subj '/CN=fanout example CA'")
    :format(ec, dir, c.ca))
  sh(("openssl req -new %s -keyout %s -out %s/server.csr -subj '/CN=127.0.0.1'")
    :format(ec, c.key, dir))
  local ext = assert(io.open(dir .. "/server.ext", "w"))
  ext:write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
  ext:close()
  sh(("openssl x509 -req -in %s/server.csr -CA %s -CAkey %s/ca.key -set_serial 1 -days 1"
    .. " -out %s -extfile %s/server.ext"):format(dir, c.ca, dir, c.cert, dir))
  for _, f in ipairs { "ca.pem", "ca.key", "server.pem", "server.key", "server.csr", "server.ext" } do
    c.files[#c.files + 1] = dir .. "/" .. f
  end
  return c
end

local function remove_certs(c)
  for _, f in ipairs(c.files) do os.remove(f) end
  os.remove(c.dir)
end

-- the local TLS server: /items lists the ids, /items/<id> describes one;
-- the slow items hold their answer well past the deadline
local function start_server(certs)
  local server = assert(socket.bind("127.0.0.1", 0))
  local tls = { mode = "server", protocol = "any", key = certs.key,
    certificate = certs.cert, options = "all" }
  copas.addserver(server, copas.handler(function(skt)
    local request = skt:receive("*l") or ""
    repeat local line = skt:receive("*l") until not line or line == ""
    local path = request:match("^GET (%S+)") or ""
    local id = tonumber(path:match("^/items/(%d+)$"))
    local body
    if path == "/items" then
      local ids = {}
      for i = 1, opts.items do ids[i] = i end
      body = table.concat(ids, "\n") .. "\n"
    elseif id and id >= 1 and id <= opts.items then
      if id % opts.slow == 0 then copas.pause(opts.deadline * 5) end
      body = ("item %d: %s\n"):format(id, ("detail "):rep(id))
    end
    local status = body and "200 OK" or "404 Not Found"
    body = body or "not found\n"
    skt:send(("HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s")
      :format(status, #body, body))
  end, { wrap = tls }), nil, "fanout_server")
  return ("https://127.0.0.1:%d"):format(select(2, server:getsockname()))
end

local certs
if not opts.base then
  certs = make_certs()
  opts.cafile = opts.cafile or certs.ca
  opts.base = start_server(certs)
  local slow = {}
  for id = opts.slow, opts.items, opts.slow do slow[#slow + 1] = id end
  print(("local server %s: %d items, slow: %s"):format(opts.base, opts.items,
    #slow > 0 and table.concat(slow, " ") or "none"))
end

-- certificate checks stay on: peer verification against the chosen CA
-- (copas.http also checks that the certificate names the host)
local sslparams = opts.cafile and { wrap = { mode = "client", protocol = "any",
  cafile = opts.cafile, verify = "peer", options = "all" } }

-- each request may take as long as the whole run: the deadline, not a
-- request timeout, is what cuts the stragglers off
local function get(url)
  local body = {}
  local ok, code = http.request { url = url, sink = ltn12.sink.table(body),
    sslparams = sslparams, timeout = math.max(10, 2 * opts.deadline) }
  if not ok then return nil, code end
  if code ~= 200 then return nil, "HTTP status " .. tostring(code) end
  return table.concat(body)
end

local exit_code = 0
copas.addthread(function()
  local list, err = get(opts.base .. "/items")
  if not list then
    print("fetching the list failed: " .. err)
    exit_code = 1
    copas.removeall()                      -- stops the local server too
    return
  end
  local ids = {}
  for id in list:gmatch("%S+") do ids[#ids + 1] = id end
  print(("list: %d items (certificate verified against %s)"):format(#ids,
    opts.cafile or "the system's CA store"))

  local pending, fetched, failed = {}, 0, 0
  local inflight, peak = 0, 0
  local tasks = limit.new(10)
  local start = copas.gettime()
  for _, id in ipairs(ids) do
    pending[id] = true
    tasks:addthread(function()
      inflight = inflight + 1
      if inflight > peak then peak = inflight end
      local body, ferr = get(opts.base .. "/items/" .. id)
      inflight = inflight - 1
      pending[id] = nil
      if body then fetched = fetched + 1 else failed = failed + 1 end
      print(("item %s: %s"):format(id, body and #body .. " bytes" or ferr))
    end)
  end

  -- ends the run: reports, then drops every thread still in the loop
  local function finish(why)
    local left = {}
    for _, id in ipairs(ids) do
      if pending[id] then left[#left + 1] = id end
    end
    print(("%s after %.1f s: %d fetched, %d failed, %d abandoned%s"):format(why,
      copas.gettime() - start, fetched, failed, #left,
      #left > 0 and " (" .. table.concat(left, " ") .. ")" or ""))
    print(("at most %d fetches at once"):format(peak))
    copas.removeall()
  end
  copas.addthread(function()
    copas.pause(opts.deadline)
    finish("deadline")                     -- the waiting thread below is dropped
  end)
  tasks:wait()
  finish("all done")                       -- the deadline thread is dropped
end)

copas.loop()
if certs then remove_certs(certs) end
os.exit(exit_code)
