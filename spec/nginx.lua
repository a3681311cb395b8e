-- Spec helper: a real nginx on 127.0.0.1 for the copas.http specs.
--
--   local nginx = require "spec.nginx"
--   local srv = nginx.start()      -- nil, reason when the nginx binary is missing
--   ... srv.http_port, srv.https_port, srv.files, srv.cafile ...
--   srv:stop()
--
-- start() makes a temporary prefix directory, generates test certificates with
-- the openssl command line tool (a throwaway CA; a server certificate for IP
-- 127.0.0.1 and DNS "copas.test"; a wildcard "*.wild.test"; a CN-only one; an
-- expired one; a self-signed one), static files of 1 byte, 64 KiB and 10 MiB
-- with known content, writes nginx.conf and starts nginx on two free ports
-- (http and https). Certificates other than the default are picked by SNI
-- name (see `srv.names`; "mismatch.test" is served the "other.test" certificate
-- and names under "wild.test" the "*.wild.test" one).

local socket = require "socket"

local nginx = {}

local function sh(cmd)
  local ok, how, code = os.execute(cmd)
  if ok == true or ok == 0 then return true end
  return nil, ("command failed (%s %s): %s"):format(tostring(how), tostring(code), cmd)
end

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  f:close()
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

local function find_binary(name, extra)
  local paths = { "/usr/sbin/", "/usr/local/sbin/", "/usr/bin/", "/usr/local/bin/", "/sbin/" }
  for _, dir in ipairs(extra or {}) do table.insert(paths, 1, dir) end
  for _, dir in ipairs(paths) do
    local f = io.open(dir .. name, "rb")
    if f then f:close(); return dir .. name end
  end
  local p = io.popen("command -v " .. name .. " 2>/dev/null")
  local found = p and p:read("*l")
  if p then p:close() end
  if found and found ~= "" then return found end
  return nil
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function is_root()
  local p = io.popen("id -u 2>/dev/null")
  local uid = p and p:read("*l")
  if p then p:close() end
  return uid == "0"
end

--- Deterministic pseudo-random content of `size` bytes (seeded by `seed`).
-- @return string
function nginx.content(size, seed)
  local parts, n = {}, 0
  local x = seed or 1
  local block = {}
  for i = 1, 4096 do
    x = (x * 1103515245 + 12345) % 2147483648
    block[i] = string.char(math.floor(x / 65536) % 256)
  end
  block = table.concat(block)
  local i = 0
  while n < size do
    -- every 4 KiB block starts with its number so shifted data never matches
    local chunk = ("%08d"):format(i) .. block:sub(9)
    parts[#parts + 1] = chunk
    n = n + #chunk
    i = i + 1
  end
  return table.concat(parts):sub(1, size)
end

-- openssl steps: CA, then leaf certificates signed by it
local function make_certs(dir)
  local ssl = find_binary("openssl")
  if not ssl then return nil, "openssl binary not found" end
  local o = q(ssl)
  local key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
  local quiet = " >/dev/null 2>&1"
  local function p(name) return q(dir .. "/" .. name) end
  local ok, err = sh(o .. " req -x509" .. key .. "-keyout " .. p("ca.key") .. " -out " ..
    p("ca.crt") .. " -days 2 -subj '/CN=copas test CA'" .. quiet)
  if not ok then return nil, err end
  local function leaf(name, cn, san, days)
    local a, e = sh(o .. " req" .. key .. "-keyout " .. p(name .. ".key") .. " -out " ..
      p(name .. ".csr") .. " -subj " .. q("/CN=" .. cn) .. quiet)
    if not a then return nil, e end
    local ext = "basicConstraints=CA:FALSE\n"
    if san then ext = ext .. "subjectAltName=" .. san .. "\n" end
    write_file(dir .. "/" .. name .. ".ext", ext)
    return sh(o .. " x509 -req -in " .. p(name .. ".csr") .. " -CA " .. p("ca.crt") ..
      " -CAkey " .. p("ca.key") .. " -set_serial " .. math.random(1, 2000000000) ..
      " -days " .. days .. " -extfile " .. p(name .. ".ext") .. " -out " .. p(name .. ".crt") ..
      quiet)
  end
  local steps = {
    { "server", "copas.test", "IP:127.0.0.1,DNS:copas.test", 2 },
    { "wild", "wild.test", "DNS:*.wild.test", 2 },
    { "cnonly", "cnonly.test", nil, 2 },
    { "other", "other.test", "DNS:other.test", 2 },
    { "expired", "expired.test", "DNS:expired.test", -1 },
  }
  for _, s in ipairs(steps) do
    ok, err = leaf(s[1], s[2], s[3], s[4])
    if not ok then return nil, err end
  end
  ok, err = sh(o .. " req -x509" .. key .. "-keyout " .. p("self.key") .. " -out " ..
    p("self.crt") .. " -days 2 -subj '/CN=self.test' -addext " ..
    q("subjectAltName=DNS:self.test,IP:127.0.0.1") .. quiet)
  if not ok then return nil, err end
  return true
end

local CONF = [[
daemon on;
master_process on;
worker_processes 1;
%s
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 2048; }
http {
  default_type application/octet-stream;
  access_log off;
  client_body_temp_path %s/tmp/body;
  proxy_temp_path %s/tmp/proxy;
  fastcgi_temp_path %s/tmp/fastcgi;
  uwsgi_temp_path %s/tmp/uwsgi;
  scgi_temp_path %s/tmp/scgi;
  keepalive_requests 100000;
  root %s/html;
  server {
    listen 127.0.0.1:%d default_server;
    server_name _;
%s
  }
%s
}
]]

local TLS_SERVER = [[
  server {
    listen 127.0.0.1:%d ssl%s;
    server_name %s;
    ssl_certificate %s/%s.crt;
    ssl_certificate_key %s/%s.key;
%s
  }
]]

-- locations served on both ports; `self_scheme`/`self_port` name the server
-- itself, `other` the other server (http <-> https)
local function locations(prefix, http_port, https_port)
  local h = "http://127.0.0.1:" .. http_port
  local s = "https://127.0.0.1:" .. https_port
  local l = {}
  local function add(fmt, ...) l[#l + 1] = "    " .. fmt:format(...) end
  add("location /files/ { }")
  add("location /chunked/ { alias %s/html/files/; addition_types *; add_after_body /tail.txt; }",
    prefix)
  add("location = /tail.txt { }")
  add("location = /nocontent { return 204; }")
  add("location = /echo-headers { default_type text/plain; return 200 " ..
    "\"ua=$http_user_agent|host=$http_host|te=$http_te|conn=$http_connection|" ..
    "auth=$http_authorization|x=$http_x_test|ct=$content_type|cl=$content_length|" ..
    "method=$request_method|uri=$request_uri\"; }")
  add("location = /to-http { return 302 %s/files/small.bin; }", h)
  add("location = /to-https { return 302 %s/files/small.bin; }", s)
  add("location = /to-http-chain { return 302 %s/to-http; }", s)
  add("location = /r301 { return 301 /files/small.bin; }")
  add("location = /r303 { return 303 /files/small.bin; }")
  add("location = /r307 { return 307 /files/small.bin; }")
  add("location = /r308 { return 308 /files/small.bin; }")
  add("location = /relative { absolute_redirect off; return 302 files/small.bin; }")
  add("location = /absolute-path { absolute_redirect off; return 302 /files/medium.bin; }")
  for i = 1, 10 do
    add("location = /chain/%d { absolute_redirect off; return 302 /chain/%d; }", i, i - 1)
  end
  add("location = /chain/0 { default_type text/plain; return 200 'end of chain'; }")
  add("location = /status/404 { return 404; }")
  return table.concat(l, "\n")
end

--- Starts nginx.
-- @return server table | nil, reason (reason starts with "nginx not found" when
-- the binary is missing; other failures raise with nginx's error log)
function nginx.start()
  local bin = find_binary("nginx")
  if not bin then return nil, "nginx not found (install nginx-light)" end
  math.randomseed(os.time())
  local base = os.tmpname()
  os.remove(base)
  local prefix = base .. "-copas-nginx"
  assert(sh("mkdir -p " .. q(prefix .. "/html/files") .. " " .. q(prefix .. "/tmp") ..
    " " .. q(prefix .. "/certs") .. " && chmod 755 " .. q(prefix)))
  local certs = prefix .. "/certs"
  assert(make_certs(certs))

  local files = {
    small = { path = "/files/small.bin", content = nginx.content(1, 7) },
    medium = { path = "/files/medium.bin", content = nginx.content(64 * 1024, 11) },
    large = { path = "/files/large.bin", content = nginx.content(10 * 1024 * 1024, 13) },
  }
  for _, f in pairs(files) do write_file(prefix .. "/html" .. f.path, f.content) end
  local tail = "-- tail --\n"
  write_file(prefix .. "/html/tail.txt", tail)

  local http_port, https_port = free_port(), free_port()
  while https_port == http_port do https_port = free_port() end
  local locs = locations(prefix, http_port, https_port)
  local tls = {}
  local function tls_server(name, cert, default)
    tls[#tls + 1] = TLS_SERVER:format(https_port, default and " default_server" or "",
      name, certs, cert, certs, cert, locs)
  end
  tls_server("_", "server", true)
  tls_server("copas.test", "server")
  tls_server("*.wild.test", "wild")
  tls_server("cnonly.test", "cnonly")
  tls_server("other.test", "other")
  tls_server("mismatch.test", "other")
  tls_server("expired.test", "expired")
  tls_server("self.test", "self")

  local user = is_root() and "user root;" or ""
  local conf = CONF:format(user, prefix, prefix, prefix, prefix, prefix, prefix, prefix,
    prefix, http_port, locs, table.concat(tls))
  write_file(prefix .. "/nginx.conf", conf)
  local ok = sh(q(bin) .. " -p " .. q(prefix) .. " -c " .. q(prefix .. "/nginx.conf") ..
    " -e " .. q(prefix .. "/error.log") .. " >" .. q(prefix .. "/start.log") .. " 2>&1")
  if not ok then
    local log = (read_file(prefix .. "/start.log") or "") .. (read_file(prefix .. "/error.log") or "")
    sh("rm -rf " .. q(prefix))
    error("nginx failed to start: " .. log, 2)
  end

  local srv = {
    prefix = prefix,
    http_port = http_port,
    https_port = https_port,
    http = "http://127.0.0.1:" .. http_port,
    https = "https://127.0.0.1:" .. https_port,
    cafile = certs .. "/ca.crt",
    files = files,
    tail = tail,
    -- SNI names selecting the certificates
    names = {
      dns = "copas.test", wild = "a.wild.test", cnonly = "cnonly.test",
      other = "other.test", mismatch = "mismatch.test", expired = "expired.test", self = "self.test",
    },
  }

  --- Stops nginx (TERM to the master, by pid) and removes the prefix.
  function srv.stop()
    local pid = read_file(prefix .. "/nginx.pid")
    pid = pid and pid:match("%d+")
    if pid then
      sh("kill -TERM " .. pid .. " 2>/dev/null")
      -- the master removes its pid file on exit; wait for that (bounded)
      local deadline = socket.gettime() + 5
      while read_file(prefix .. "/nginx.pid") and socket.gettime() < deadline do
        socket.sleep(0.02)
      end
    end
    sh("rm -rf " .. q(prefix))
  end

  -- the listening sockets are open when the daemonising nginx returns; wait
  -- for a worker to answer (bounded)
  local deadline = socket.gettime() + 5
  while true do
    local c = socket.tcp()
    c:settimeout(1)
    if c:connect("127.0.0.1", http_port) then
      c:send("HEAD /files/small.bin HTTP/1.0\r\n\r\n")
      local line = c:receive("*l")
      c:close()
      if line and line:match("^HTTP/1%.%d 200") then break end
    else
      c:close()
    end
    if socket.gettime() > deadline then
      srv.stop()
      error("nginx did not answer within 5 s", 2)
    end
    socket.sleep(0.02)
  end
  return srv
end

return nginx
