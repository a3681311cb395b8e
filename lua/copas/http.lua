--- copas.http: an HTTP/1.1 client on Copas sockets.
--
-- A request runs inside the calling Copas thread: every connect, send and
-- receive yields to the scheduler, so requests in many threads proceed
-- concurrently. The interface follows LuaSocket's socket.http (simple and
-- generic request forms, ltn12 sources and sinks) plus https, redirects
-- across schemes and per-operation timeouts.
-- @module copas.http

local copas = require "copas"
local socket = require "socket"
local url = require "socket.url"
local ltn12 = require "ltn12"
local mime = require "mime"
local canonic = require("socket.headers").canonic

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local setmetatable, error = setmetatable, error
local concat, lower, find, format = table.concat, string.lower, string.find, string.format

-- a pcall that works across yields on every Lua the project supports
local pcall_y = copas._pcall or pcall

--- Settings: fields of the module, read at each request and assignable
-- (`copas.http.TIMEOUT = 10`).
-- @field TIMEOUT seconds for each connect, send and receive (default 60)
-- @field PORT default port of http URLs (80)
-- @field SSLPORT default port of https URLs (443)
-- @field USERAGENT the `user-agent` header sent
-- @field SSLPROTOCOL LuaSec protocol for https ("tlsv1_2")
-- @field SSLOPTIONS LuaSec options for https ("all")
-- @field SSLVERIFY "peer" (default): verify the certificate against the
-- system CA store and check that it names the host; "none" opts out
-- @field SSLSNISTRICT default `strict` of SNI (false)
-- @field PROXY proxy URL used when a request gives none (default unset)
-- @table settings
local M = {
  TIMEOUT = 60,
  PORT = 80,
  SSLPORT = 443,
  USERAGENT = socket._VERSION,
  SSLPROTOCOL = "tlsv1_2",
  SSLOPTIONS = "all",
  -- verify the server certificate against the system CA store and check that
  -- it names the host; "none" opts out
  SSLVERIFY = "peer",
  SSLSNISTRICT = false,
}

-- limits on a response head, so a misbehaving server cannot grow it forever
local MAX_HEADER_LINES = 10000
local MAX_HEADER_BYTES = 1024 * 1024

-- response heads and chunked bodies ------------------------------------------

-- Reads header lines up to the blank line into `headers` (names lower-cased,
-- folded lines unfolded, repeated names joined with ", ").
-- @return headers | nil, err
local function receive_headers(sock, headers)
  headers = headers or {}
  local line, err = sock:receive("*l")
  if not line then return nil, err end
  local count, bytes = 0, 0
  while line ~= "" do
    local name, value = line:match("^([^:]-)%s*:%s*(.-)%s*$")
    if not name or name == "" then return nil, "malformed reponse headers" end
    name = lower(name)
    while true do
      line, err = sock:receive("*l")
      if not line then return nil, err end
      count, bytes = count + 1, bytes + #line
      if count > MAX_HEADER_LINES or bytes > MAX_HEADER_BYTES then
        return nil, "response headers too large"
      end
      if not find(line, "^[ \t]") then break end
      value = value .. " " .. line:match("^%s*(.-)%s*$")
    end
    local old = headers[name]
    headers[name] = old and (old .. ", " .. value) or value
  end
  return headers
end

-- source reading a chunked body; trailers are added to `headers`
local function chunked_source(sock, headers)
  local done = false
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
  }, {
    __call = function()
      if done then return nil end
      local line, err = sock:receive("*l")
      if not line then return nil, err end
      local hex = line:gsub(";.*", ""):match("^%s*(%x+)%s*$")
      local size = hex and tonumber(hex, 16)
      if not size then return nil, "invalid chunk size" end
      if size == 0 then
        done = true
        local _, herr = receive_headers(sock, headers)
        if herr then return nil, herr end
        return nil
      end
      local chunk
      chunk, err = sock:receive(size)
      if not chunk then return nil, err end
      line, err = sock:receive("*l")
      if not line then return nil, err end
      if line ~= "" then return nil, "invalid chunk terminator" end
      return chunk
    end,
  })
end

-- sink writing a chunked body; the end of data writes the last chunk
local function chunked_sink(sock)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
  }, {
    __call = function(_, chunk)
      if chunk == nil then return sock:send("0\r\n\r\n") end
      if chunk == "" then return 1 end
      return sock:send(format("%X\r\n", #chunk) .. chunk .. "\r\n")
    end,
  })
end

socket.sourcet["http-chunked"] = chunked_source
socket.sinkt["http-chunked"] = chunked_sink

-- source reading exactly `length` bytes
local function length_source(sock, length)
  local left = length
  return function()
    if left <= 0 then return nil end
    local chunk, err, partial = sock:receive(left < 16384 and left or 16384)
    if not chunk then return nil, err, partial end
    left = left - #chunk
    return chunk
  end
end

-- source reading until the server closes, starting with `first`
local function close_source(sock, first)
  local done = false
  return function()
    if first then
      local f = first
      first = nil
      if f ~= "" then return f end
    end
    if done then return nil end
    local chunk, err, partial = sock:receive(16384)
    if chunk then return chunk end
    if err == "closed" then
      done = true
      if partial and partial ~= "" then return partial end
      return nil
    end
    return nil, err
  end
end

-- TLS: parameters and host name verification ---------------------------------

-- system CA store locations tried in order (file, directory)
local CA_FILES = {
  "/etc/ssl/certs/ca-certificates.crt",   -- Debian, Ubuntu, Alpine, Arch
  "/etc/pki/tls/certs/ca-bundle.crt",     -- Fedora, RHEL
  "/etc/ssl/ca-bundle.pem",               -- openSUSE
  "/etc/ssl/cert.pem",                    -- macOS, BSDs
}
local CA_DIRS = { "/etc/ssl/certs" }

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local system_store
local function get_system_store()
  if system_store == nil then
    system_store = {}
    local file = os.getenv("SSL_CERT_FILE")
    if not (file and exists(file)) then
      file = nil
      for _, p in ipairs(CA_FILES) do
        if exists(p) then file = p break end
      end
    end
    local dir = os.getenv("SSL_CERT_DIR")
    if not dir then
      for _, p in ipairs(CA_DIRS) do
        if exists(p) then dir = p break end
      end
    end
    system_store.cafile, system_store.capath = file, dir
  end
  return system_store
end

local function verifies_peer(verify)
  if verify == "peer" then return true end
  if type(verify) == "table" then
    for _, v in ipairs(verify) do
      if v == "peer" then return true end
    end
  end
  return false
end

local function is_ip_literal(host)
  return find(host, ":", 1, true) ~= nil or host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil
end

-- expands an IPv6 address to 8 groups of 4 lower-case hex digits
local function normalize_ip(ip)
  ip = lower(ip)
  if not find(ip, ":", 1, true) then return ip end
  local head, tail = ip:match("^(.-)::(.*)$")
  local groups = {}
  local function add(part, out)
    for g in part:gmatch("[^:]+") do out[#out + 1] = g end
  end
  if head then
    local h, t = {}, {}
    add(head, h)
    add(tail, t)
    for _, g in ipairs(h) do groups[#groups + 1] = g end
    for _ = 1, 8 - #h - #t do groups[#groups + 1] = "0" end
    for _, g in ipairs(t) do groups[#groups + 1] = g end
  else
    add(ip, groups)
  end
  for i, g in ipairs(groups) do groups[i] = ("%04s"):format(g):gsub(" ", "0") end
  return concat(groups, ":")
end

-- does certificate name `pattern` match `host`? A "*" is allowed as the whole
-- left-most label only and matches exactly one label.
local function name_matches(pattern, host)
  pattern, host = lower(pattern), lower(host)
  if pattern == host then return true end
  local rest = pattern:match("^%*(%..+%..+)$")
  if not rest or is_ip_literal(host) then return false end
  local first, hrest = host:match("^([^.]+)(%..+)$")
  return first ~= nil and hrest == rest
end

-- Checks the peer certificate of `tls` (a LuaSec socket) names `host`.
-- @return true | nil, reason
local function check_host(tls, host)
  local cert = tls:getpeercertificate()
  if not cert then return nil, "no peer certificate" end
  local ip = is_ip_literal(host)
  local san = (cert:extensions() or {})["2.5.29.17"]
  if san then
    if ip then
      local want = normalize_ip(host)
      for _, a in ipairs(san.iPAddress or {}) do
        if normalize_ip(a) == want then return true end
      end
    else
      for _, n in ipairs(san.dNSName or {}) do
        if name_matches(n, host) then return true end
      end
    end
  end
  if not (san and (san.dNSName or san.iPAddress)) then
    -- no subjectAltName names: fall back to the common name
    for _, e in ipairs(cert:subject() or {}) do
      if e.name == "commonName" or e.name == "CN" or e.oid == "2.5.4.3" then
        if ip and normalize_ip(e.value) == normalize_ip(host) then return true end
        if not ip and name_matches(e.value, host) then return true end
      end
    end
  end
  return nil, "certificate does not match host name '" .. host .. "'"
end

-- extracts "TLS/SSL handshake failed: ..." from a raised error
local function handshake_error(err)
  if type(err) == "table" and err[1] ~= nil then err = err[1] end
  err = tostring(err)
  local msg = err:match("(TLS/SSL handshake failed: .*)$")
  return msg or ("TLS/SSL handshake failed: " .. err)
end

-- builds the per-connection TLS parameters for `host`; the host name is
-- checked when the parameters verify the peer (a LuaSec context given as
-- `wrap` is used as is: its owner decides about verification)
-- @return sslparams {wrap=..., sni=...}, name to check (or false)
local function tls_params(params, host)
  local sp = params.sslparams or {}
  local wrap = sp.wrap
  if wrap == nil then
    wrap = { protocol = params.protocol, options = params.options, verify = params.verify }
  end
  local check
  if type(wrap) == "table" then
    local w = {}
    for k, v in pairs(wrap) do w[k] = v end
    w.mode = "client"
    w.protocol = w.protocol or M.SSLPROTOCOL
    w.options = w.options or M.SSLOPTIONS
    if w.verify == nil then w.verify = M.SSLVERIFY end
    if verifies_peer(w.verify) then
      if not w.cafile and not w.capath then
        local store = get_system_store()
        w.cafile, w.capath = store.cafile, store.capath
      end
      check = true
    end
    wrap = w
  end
  local sni = sp.sni
  local names = type(sni) == "table" and sni.names or nil
  if check then
    check = type(names) == "string" and names or host
  end
  if not names and not is_ip_literal(host) then names = host end
  local strict = M.SSLSNISTRICT
  if type(sni) == "table" and sni.strict ~= nil then strict = sni.strict end
  return { wrap = wrap, sni = names and { names = names, strict = strict } or false }, check or false
end

-------------------------------------------------------------------------------
-- Socket factory.
-- @section factory
-------------------------------------------------------------------------------

--- Returns `create(reqt)`: a Copas-wrapped TCP socket, configured for TLS when
-- `reqt` is an https request (SNI naming that hop's host). Once it made an
-- https socket it refuses plain http with "Unallowed insecure redirect https
-- to http" (raised as a socket.try error) unless `params.redirect == "all"`.
-- The sockets' connect returns `nil, "TLS/SSL handshake failed: ..."` on TLS
-- failures (including a certificate not naming the host) instead of raising.
-- @param params a request table (TLS fields `sslparams`, `protocol`,
-- `options`, `verify`; `redirect`)
-- @return function
function M.getcreatefunc(params)
  if params ~= nil and type(params) ~= "table" then
    error("bad argument #1 to 'getcreatefunc' (table expected, got " .. type(params) .. ")", 2)
  end
  params = params or {}
  local washttps = false
  return function(reqt)
    reqt = reqt or {}
    local u = reqt.url and url.parse(reqt.url) or {}
    local scheme = lower(tostring(reqt.scheme or u.scheme or "http"))
    local host = u.host or reqt.host
    if scheme ~= "https" then
      if washttps and params.redirect ~= "all" then
        socket.try(nil, "Unallowed insecure redirect https to http")
      end
      return copas.wrap(socket.tcp())
    end
    washttps = true
    local sslp, check = tls_params(params, host or "")
    local conn = copas.wrap(socket.tcp(), sslp)
    -- connect: TCP connect, then handshake; failures come back as nil, err
    conn.connect = function(self, chost, cport)
      local ok, ret, err = pcall_y(getmetatable(self).__index.connect, self, chost, cport)
      if not ok then
        self:close()
        return nil, handshake_error(ret)
      end
      if not ret then return nil, err end
      if check and self.socket.getpeercertificate then
        local good, why = check_host(self.socket, check)
        if not good then
          self:close()
          return nil, "TLS/SSL handshake failed: " .. why
        end
      end
      return ret
    end
    return conn
  end
end

-------------------------------------------------------------------------------
-- Low level: connections (the interface of LuaSocket's socket.http.open).
-- @section connections
-------------------------------------------------------------------------------

local VALID_TIMEOUTS = { connect = true, send = true, receive = true }

local function check_timeout(to)
  if to and type(to) ~= "number" and type(to) ~= "table" then
    error("bad argument #1 to 'request' (field 'timeout': number or table expected, got "
      .. type(to) .. ")", 0)
  end
  if type(to) == "table" then
    for k in pairs(to) do
      if not VALID_TIMEOUTS[k] then
        error("'" .. tostring(k) .. "' is not a valid timeout option. " ..
          "Valid: 'connect', 'send', 'receive'", 0)
      end
      if to[k] and type(to[k]) ~= "number" then
        error("bad argument #1 to 'request' (field 'timeout." .. k .. "': number expected, got "
          .. type(to[k]) .. ")", 0)
      end
    end
  end
end

local function set_timeouts(c, to)
  to = to or M.TIMEOUT
  if type(to) == "table" then
    c:settimeouts(to.connect or M.TIMEOUT, to.send or M.TIMEOUT, to.receive or M.TIMEOUT)
  else
    c:settimeout(to)
  end
end

-- fields of a generic request that must have a given type when present
local FIELD_TYPES = {
  headers = "table", sink = "function", source = "function", step = "function",
  create = "function", method = "string",
}

local function check_fields(reqt, fname)
  for field, want in pairs(FIELD_TYPES) do
    local v = reqt[field]
    if v ~= nil and type(v) ~= want then
      error(("bad argument #1 to '%s' (field '%s': %s expected, got %s)")
        :format(fname, field, want, type(v)), 3)
    end
  end
  local m = reqt.maxredirects
  if m ~= nil and m ~= false and type(m) ~= "number" then
    error(("bad argument #1 to '%s' (field 'maxredirects': number or false expected, got %s)")
      :format(fname, type(m)), 3)
  end
end

local conn_mt = { __index = {} }
local conn = conn_mt.__index

--- Opens a connection for request table `reqt` (fields host, port, create,
-- timeout, url, scheme as in a generic request).
-- @param reqt request table
-- @return connection object, or `nil, err`
function M.open(reqt)
  if type(reqt) ~= "table" then
    error("bad argument #1 to 'open' (table expected, got " .. type(reqt) .. ")", 2)
  end
  check_fields(reqt, "open")
  if type(reqt.host) ~= "string" then
    error("bad argument #1 to 'open' (field 'host': string expected, got " .. type(reqt.host) .. ")", 2)
  end
  local create = reqt.create or M.getcreatefunc(reqt)
  local ok, c, cerr = pcall_y(create, reqt)
  if not ok then
    local e = c
    if type(e) == "table" and e[1] ~= nil then e = e[1] end
    return nil, tostring(e)
  end
  if not c then return nil, cerr end
  set_timeouts(c, reqt.timeout)
  -- a socket from a caller's create may raise on a failed TLS handshake
  local cok, r, err = pcall_y(c.connect, c, reqt.host, reqt.port)
  if not cok then
    c:close()
    if not tostring(r):find("TLS/SSL handshake failed", 1, true) then error(r, 0) end
    return nil, handshake_error(r)
  end
  if not r then
    c:close()
    return nil, err
  end
  return setmetatable({ c = c }, conn_mt)
end

--- Sends the request line.
-- @param method "GET", "POST", ...
-- @param uri request target
-- @return `1`, or `nil, err`
function conn:sendrequestline(method, uri)
  local ok, err = self.c:send(format("%s %s HTTP/1.1\r\n", method or "GET", uri))
  if not ok then return nil, err end
  return 1
end

--- Sends the request headers and the blank line that ends them.
-- @param headers table of name = value
-- @return `1`, or `nil, err`
function conn:sendheaders(headers)
  local out = {}
  for name, value in pairs(headers) do
    out[#out + 1] = (canonic[name] or name) .. ": " .. tostring(value) .. "\r\n"
  end
  table.sort(out)
  out[#out + 1] = "\r\n"
  local ok, err = self.c:send(concat(out))
  if not ok then return nil, err end
  return 1
end

--- Sends the request body from an ltn12 source: as is with a
-- `content-length` header, else with chunked encoding.
-- @param headers the request headers
-- @param source ltn12 source (default: empty)
-- @param step ltn12 pump step
-- @return `1`, or `nil, err`
function conn:sendbody(headers, source, step)
  local mode = headers["content-length"] and "keep-open" or "http-chunked"
  local sink = mode == "keep-open" and socket.sink("keep-open", self.c) or chunked_sink(self.c)
  return ltn12.pump.all(source or ltn12.source.empty(), sink, step or ltn12.pump.step)
end

--- Receives the status line, skipping 100-continue responses.
-- @return `code, status line`; `nil, first bytes` for an HTTP/0.9 reply;
-- `nil, err, false` on failure
function conn:receivestatusline()
  local first, err, partial = self.c:receive(5)
  if not first then
    if err == "closed" and partial and partial ~= "" then return nil, partial end
    return nil, err, false
  end
  if first ~= "HTTP/" then return nil, first end
  local line
  line, err = self.c:receive("*l", first)
  if not line then return nil, err, false end
  local code = line:match("^HTTP/%d*%.?%d* (%d%d%d)")
  if not code then return nil, line, false end
  return tonumber(code), line
end

--- Receives the response headers (names lower-cased).
-- @return headers, or `nil, err`
function conn:receiveheaders()
  return receive_headers(self.c)
end

--- Receives the body by chunked encoding, content-length or until close.
-- @param headers the response headers
-- @param sink ltn12 sink (default: discard)
-- @param step ltn12 pump step
-- @return `1`, or `nil, err`
function conn:receivebody(headers, sink, step)
  local te = headers["transfer-encoding"]
  local length = tonumber(headers["content-length"])
  local source
  if te and lower(te) ~= "identity" then
    source = chunked_source(self.c, headers)
  elseif length then
    source = length_source(self.c, length)
  else
    source = close_source(self.c)
  end
  return ltn12.pump.all(source, sink or ltn12.sink.null(), step or ltn12.pump.step)
end

--- Receives the body of an HTTP/0.9 reply: `first` and everything until the
-- server closes.
-- @param first the bytes read by `receivestatusline`
-- @param sink ltn12 sink
-- @param step ltn12 pump step
-- @return `1`, or `nil, err`
function conn:receive09body(first, sink, step)
  return ltn12.pump.all(close_source(self.c, first), sink or ltn12.sink.null(),
    step or ltn12.pump.step)
end

--- Closes the connection.
function conn:close()
  return self.c:close()
end

-------------------------------------------------------------------------------
-- Requests.
-- @section requests
-------------------------------------------------------------------------------

local URL_DEFAULTS = { path = "/", scheme = "http" }

-- request table with the URL parsed and defaults filled in
-- @return request | nil, err
local function adjust(reqt)
  local n = {}
  if reqt.url ~= nil then
    local parsed = url.parse(tostring(reqt.url), URL_DEFAULTS)
    if parsed then n = parsed end
  end
  for k, v in pairs(reqt) do n[k] = v end
  n.scheme = lower(tostring(n.scheme or "http"))
  if n.scheme ~= "http" and n.scheme ~= "https" then
    return nil, "unsupported scheme '" .. n.scheme .. "'"
  end
  if type(n.host) ~= "string" or n.host == "" then
    return nil, "invalid host '" .. tostring(n.host) .. "'"
  end
  if n.port == nil or n.port == "" then
    n.port = n.scheme == "https" and M.SSLPORT or M.PORT
  end
  local port = tonumber(n.port)
  if not port then return nil, "invalid port '" .. tostring(n.port) .. "'" end
  n.port = port
  if not n.method or n.method == "" then n.method = "GET" end
  if type(n.path) ~= "string" or n.path == "" then n.path = "/" end
  if not n.authority then
    local default_port = n.scheme == "https" and M.SSLPORT or M.PORT
    n.authority = (find(n.host, ":", 1, true) and ("[" .. n.host .. "]") or n.host) ..
      (n.port ~= default_port and (":" .. n.port) or "")
  end
  n.target_url = url.build {
    scheme = n.scheme, host = n.host, port = n.port, path = n.path,
    params = n.params, query = n.query,
  }
  local proxy = n.proxy or M.PROXY
  n.tunnel = (proxy and n.scheme == "https") and true or false
  if not n.uri then
    if proxy and not n.tunnel then
      n.uri = url.build { scheme = n.scheme, host = n.host, port = n.port ~= (n.scheme ==
        "https" and M.SSLPORT or M.PORT) and n.port or nil, path = n.path,
        params = n.params, query = n.query }
    else
      n.uri = url.build { path = n.path, params = n.params, query = n.query }
    end
  end
  -- default headers, then the caller's (names case-insensitive)
  local h = {
    ["user-agent"] = M.USERAGENT,
    ["host"] = (n.authority:gsub("^.-@", "")),
    ["connection"] = "close, TE",
    ["te"] = "trailers",
  }
  if n.user and n.password then
    h["authorization"] = "Basic " .. mime.b64(url.unescape(n.user) .. ":" ..
      url.unescape(n.password))
  end
  for k, v in pairs(reqt.headers or {}) do h[lower(k)] = v end
  if n.source and not h["content-length"] and not h["transfer-encoding"] then
    h["transfer-encoding"] = "chunked"
  end
  n.headers = h
  if proxy then
    local p = url.parse(proxy)
    if not p or not p.host then return nil, "invalid proxy '" .. tostring(proxy) .. "'" end
    n.connect_host, n.connect_port = p.host, tonumber(p.port) or 3128
  else
    n.connect_host, n.connect_port = n.host, n.port
  end
  return n
end

local function should_redirect(reqt, code, headers, nredirects)
  local location = headers.location
  if not location or location:gsub("%s", "") == "" then return false end
  if reqt.redirect == false then return false end
  if not (code == 301 or code == 302 or code == 303 or code == 307) then return false end
  if reqt.method ~= "GET" and reqt.method ~= "HEAD" then return false end
  if reqt.source then return false end
  local max = reqt.maxredirects
  if max ~= false then max = tonumber(max) or 5 end
  if max and nredirects >= max then return false end
  return true
end

local function should_receive_body(reqt, code)
  if reqt.method == "HEAD" then return false end
  if code == 204 or code == 304 then return false end
  if code >= 100 and code < 200 then return false end
  return true
end

-- https through a proxy: CONNECT to the origin, then TLS over the tunnel
-- @return connection object | nil, err
local function open_tunnel(n)
  local c = copas.wrap(socket.tcp())
  set_timeouts(c, n.timeout)
  local function fail(err)
    c:close()
    return nil, err
  end
  local ok, err = c:connect(n.connect_host, n.connect_port)
  if not ok then return fail(err) end
  local authority = (find(n.host, ":", 1, true) and ("[" .. n.host .. "]") or n.host) ..
    ":" .. n.port
  ok, err = c:send("CONNECT " .. authority .. " HTTP/1.1\r\nHost: " .. authority ..
    "\r\nUser-Agent: " .. tostring(M.USERAGENT) .. "\r\n\r\n")
  if not ok then return fail(err) end
  local line
  line, err = c:receive("*l")
  if not line then return fail(err) end
  local code = tonumber(line:match("^HTTP/%d*%.?%d* (%d%d%d)"))
  local _, herr = receive_headers(c)
  if herr then return fail(herr) end
  if not code or code < 200 or code > 299 then
    return fail("proxy CONNECT failed: " .. line)
  end
  local sslp, check = tls_params(n, n.host)
  c.ssl_params = sslp
  local hok, res, rerr = pcall_y(function()
    if sslp.sni then c:sni() end
    return c:dohandshake()
  end)
  if not hok then return fail(handshake_error(res)) end
  if not res then return fail(rerr) end
  if check then
    local good, why = check_host(c.socket, check)
    if not good then return fail("TLS/SSL handshake failed: " .. why) end
  end
  return setmetatable({ c = c }, conn_mt)
end

-- one request/response exchange
-- @return "redirect", location | 1, code, headers, status | nil, err
local function exchange(n, nredirects)
  local open_t = {
    url = n.target_url, scheme = n.scheme, host = n.connect_host, port = n.connect_port,
    create = n.create, timeout = n.timeout,
  }
  local h, err
  if n.tunnel then
    h, err = open_tunnel(n)
  else
    h, err = M.open(open_t)
  end
  if not h then return nil, err end
  local function fail(e)
    h:close()
    return nil, e
  end
  local ok
  ok, err = h:sendrequestline(n.method, n.uri)
  if not ok then return fail(err) end
  ok, err = h:sendheaders(n.headers)
  if not ok then return fail(err) end
  if n.source then
    ok, err = h:sendbody(n.headers, n.source, n.step)
    if not ok then return fail(err) end
  end
  local code, status, serr = h:receivestatusline()
  if not code then
    if serr == false then return fail(status) end
    -- no status line: an HTTP/0.9 reply
    ok, err = h:receive09body(status, n.sink, n.step)
    if not ok then return fail(err) end
    h:close()
    return 1, 200
  end
  local headers
  while code == 100 do
    headers, err = h:receiveheaders()
    if not headers then return fail(err) end
    code, status, serr = h:receivestatusline()
    if not code then return fail(serr == false and status or "invalid status line") end
  end
  headers, err = h:receiveheaders()
  if not headers then return fail(err) end
  if should_redirect(n, code, headers, nredirects) then
    h:close()
    return "redirect", headers.location
  end
  if should_receive_body(n, code) then
    ok, err = h:receivebody(headers, n.sink, n.step)
    if not ok then return fail(err) end
  end
  h:close()
  return 1, code, headers, status
end

-- generic form
local function trequest(reqt)
  check_timeout(reqt.timeout)
  local params = reqt
  local create = reqt.create or M.getcreatefunc(reqt)
  local current = reqt
  local nredirects = 0
  local washttps = false
  local last_location
  while true do
    local n, err = adjust(current)
    if not n then return nil, err end
    if n.scheme == "https" then
      washttps = true
    elseif washttps and params.redirect ~= "all" then
      return nil, "Unallowed insecure redirect https to http"
    end
    n.create = create
    local r, code, headers, status = exchange(n, nredirects)
    if not r then return nil, code end
    if r ~= "redirect" then
      if last_location and headers and headers.location == nil then
        headers.location = last_location
      end
      return r, code, headers, status
    end
    -- follow: same method, headers, sink and settings on the new URL
    last_location = code
    nredirects = nredirects + 1
    current = {
      url = url.absolute(n.target_url, last_location),
      method = n.method,
      headers = reqt.headers,
      sink = reqt.sink,
      step = reqt.step,
      proxy = reqt.proxy,
      redirect = reqt.redirect,
      maxredirects = reqt.maxredirects,
      timeout = reqt.timeout,
      sslparams = reqt.sslparams,
      protocol = reqt.protocol,
      options = reqt.options,
      verify = reqt.verify,
    }
  end
end

--- Simple-form helper: a generic request table for `u` (a POST of `body`
-- when given) with a table sink whose parts are collected in `target`.
-- @param u URL
-- @param body string or nil
-- @return request table
function M.parseRequest(u, body)
  local t = {}
  local reqt = { url = u, target = t, sink = ltn12.sink.table(t) }
  if body then
    reqt.method = "POST"
    reqt.source = ltn12.source.string(body)
    reqt.headers = {
      ["content-length"] = #body,
      ["content-type"] = "application/x-www-form-urlencoded",
    }
  end
  return reqt
end

--- Performs an HTTP or HTTPS request from inside a Copas thread.
-- Simple form: `request(url[, body])` (a POST when `body` is given).
-- Generic form: `request(t)` with LuaSocket's fields `url`, `sink`,
-- `method`, `headers`, `source`, `step`, `proxy`, `redirect` (false: none;
-- "all": also https to http), `create`, plus `maxredirects` (default 5,
-- false: unlimited), `timeout` (seconds, or a table with `connect`, `send`,
-- `receive`) and `sslparams` (`{wrap = ..., sni = ...}`; legacy `protocol`,
-- `options`, `verify` fill it).
-- Errors: "timeout", "closed", "connection refused", resolver messages,
-- "invalid host '<h>'", "unsupported scheme '<s>'", "TLS/SSL handshake
-- failed: ...", "Unallowed insecure redirect https to http". Raises only for
-- a timeout table with an unknown key.
-- @param reqt URL string or request table
-- @param body request body (simple form)
-- @return simple form: `body, code, headers, status`; generic form:
-- `1, code, headers, status`; `nil, err` on failure
-- @usage copas.addthread(function()
--   local body, code = copas.http.request("https://example.org/")
--   print(code, body and #body)
-- end)
function M.request(reqt, body)
  if type(reqt) == "string" then
    if body ~= nil and type(body) ~= "string" then
      error("bad argument #2 to 'request' (string expected, got " .. type(body) .. ")", 2)
    end
    local t = M.parseRequest(reqt, body)
    local ok, code, headers, status = trequest(t)
    if not ok then return nil, code end
    return concat(t.target), code, headers, status
  end
  if type(reqt) ~= "table" then
    error("bad argument #1 to 'request' (string or table expected, got " .. type(reqt) .. ")", 2)
  end
  check_fields(reqt, "request")
  return trequest(reqt)
end

return M
