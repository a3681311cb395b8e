-- copas.http against a real nginx (spec/nginx.lua) and scripted local servers.
local helpers = require "spec.helpers"
local nginx = require "spec.nginx"
local socket = require "socket"
local ltn12 = require "ltn12"

local copas = require "copas"
local http = require "copas.http"

-- a scripted HTTP server on 127.0.0.1:<free port>. `script(c, req, n)` gets
-- the wrapped client, the parsed request and the connection number; the
-- requests are recorded in `srv.requests`.
local function read_request(c)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  local req = { line = line, headers = {}, order = {} }
  req.method, req.target = line:match("^(%S+) (%S+)")
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.*)$")
    req.headers[name:lower()] = value
    req.order[#req.order + 1] = name
  end
  local te, cl = req.headers["transfer-encoding"], tonumber(req.headers["content-length"])
  if te == "chunked" then
    local parts, sizes = {}, {}
    while true do
      local size = tonumber(c:receive("*l"), 16)
      sizes[#sizes + 1] = size
      if not size or size == 0 then break end
      parts[#parts + 1] = c:receive(size)
      c:receive("*l")
    end
    c:receive("*l")
    req.body, req.chunk_sizes = table.concat(parts), sizes
  elseif cl then
    req.body = c:receive(cl)
  end
  return req
end

local function script_server(script)
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local srv = { port = port, url = "http://127.0.0.1:" .. port, requests = {}, count = 0 }
  copas.addserver(server, copas.handler(function(c)
    srv.count = srv.count + 1
    local n = srv.count
    local req = read_request(c)
    srv.requests[#srv.requests + 1] = req
    script(c, req, n)
  end))
  function srv.stop() copas.removeserver(server) end
  return srv
end

-- runs `fn` as a copas thread until the loop ends (bounded); the servers
-- given are stopped when `fn` returns or fails, and a failure is re-raised
local function run(fn, timeout, ...)
  helpers.run_serving(copas, fn, timeout or 20, ...)
end

local _  -- placeholder for ignored results

local function collect()
  local t = {}
  return ltn12.sink.table(t), function() return table.concat(t) end
end

describe("copas.http", function()
  local srv, skip_reason

  setup(function()
    srv, skip_reason = nginx.start()
  end)

  teardown(function()
    if srv then srv.stop() end
  end)

  local function need_nginx()
    if not srv then
      pending("nginx not available: " .. tostring(skip_reason))
      return false
    end
    return true
  end

  local old_verify
  before_each(function() old_verify = http.SSLVERIFY end)
  after_each(function()
    http.SSLVERIFY = old_verify
    http.PROXY = nil
  end)

  describe("module", function()
    it("has the documented fields and defaults", function()
      assert.equal(60, http.TIMEOUT)
      assert.equal(80, http.PORT)
      assert.equal(443, http.SSLPORT)
      assert.equal(socket._VERSION, http.USERAGENT)
      assert.equal("tlsv1_2", http.SSLPROTOCOL)
      assert.equal("all", http.SSLOPTIONS)
      assert.equal("peer", http.SSLVERIFY)
      assert.is_false(http.SSLSNISTRICT)
      assert.is_function(http.getcreatefunc)
      assert.is_function(http.open)
      assert.is_function(http.parseRequest)
    end)

    it("is copas.http", function()
      assert.equal(require "copas.http", copas.http)
    end)

    it("registers 'http-chunked' in socket.sourcet and socket.sinkt", function()
      assert.is_function(socket.sourcet["http-chunked"])
      assert.is_function(socket.sinkt["http-chunked"])
      -- the sink writes chunks and the last chunk to its socket
      local sent = {}
      local fake = { send = function(_, d) sent[#sent + 1] = d return #d end }
      local sink = socket.sink("http-chunked", fake)
      sink("hello")
      sink(nil)
      assert.equal("5\r\nhello\r\n0\r\n\r\n", table.concat(sent))
    end)

    it("parseRequest builds a POST with a target table", function()
      local t = http.parseRequest("http://127.0.0.1/x", "a=1")
      assert.equal("POST", t.method)
      assert.equal(3, t.headers["content-length"])
      assert.equal("application/x-www-form-urlencoded", t.headers["content-type"])
      assert.is_table(t.target)
      local g = http.parseRequest("http://127.0.0.1/x")
      assert.is_nil(g.method)
      assert.is_nil(g.source)
    end)
  end)

  describe("bodies from nginx", function()
    for _, name in ipairs { "small", "medium", "large" } do
      it("simple form returns the " .. name .. " file with its length and content", function()
        if not need_nginx() then return end
        local f = srv.files[name]
        local body, code, headers, status
        run(function() body, code, headers, status = http.request(srv.http .. f.path) end)
        assert.equal(200, code)
        assert.equal("HTTP/1.1 200 OK", status)
        assert.equal(tostring(#f.content), headers["content-length"])
        assert.equal(#f.content, #body)
        assert.is_true(body == f.content, "body differs from the file")
      end)
    end

    it("generic form returns 1 and streams into the sink", function()
      if not need_nginx() then return end
      local sink, get = collect()
      local r, code, headers
      run(function()
        r, code, headers = http.request { url = srv.http .. srv.files.medium.path, sink = sink }
      end)
      assert.same({ 1, 200 }, { r, code })
      assert.equal("65536", headers["content-length"])
      assert.is_true(get() == srv.files.medium.content)
    end)

    it("generic form without a sink discards the body", function()
      if not need_nginx() then return end
      local r, code
      run(function() r, code = http.request { url = srv.http .. srv.files.large.path } end)
      assert.same({ 1, 200 }, { r, code })
    end)

    it("https with the test CA returns the file", function()
      if not need_nginx() then return end
      local sink, get = collect()
      local r, code
      run(function()
        r, code = http.request { url = srv.https .. srv.files.large.path, sink = sink,
          sslparams = { wrap = { cafile = srv.cafile } } }
      end)
      assert.same({ 1, 200 }, { r, code })
      assert.is_true(get() == srv.files.large.content)
    end)

    it("decodes a chunked response", function()
      if not need_nginx() then return end
      local body, code, headers
      run(function() body, code, headers = http.request(srv.http .. "/chunked/medium.bin") end)
      assert.equal(200, code)
      assert.equal("chunked", headers["transfer-encoding"])
      assert.is_nil(headers["content-length"])
      assert.equal(#srv.files.medium.content + #srv.tail, #body)
      assert.is_true(body == srv.files.medium.content .. srv.tail)
    end)

    it("HEAD returns headers and no body", function()
      if not need_nginx() then return end
      local sink, get = collect()
      local r, code, headers
      run(function()
        r, code, headers = http.request { url = srv.http .. srv.files.large.path,
          method = "HEAD", sink = sink }
      end)
      assert.same({ 1, 200 }, { r, code })
      assert.equal("10485760", headers["content-length"])
      assert.equal("", get())
    end)

    it("204 and 304 have no body", function()
      if not need_nginx() then return end
      local c204, c304, b204, b304
      run(function()
        b204, c204 = http.request(srv.http .. "/nocontent")
        local _, _, h = http.request(srv.http .. srv.files.medium.path)
        b304, c304 = http.request { url = srv.http .. srv.files.medium.path,
          headers = { ["if-modified-since"] = h["last-modified"] } }
      end)
      assert.same({ "", 204 }, { b204, c204 })
      assert.equal(304, c304)
      assert.equal(1, b304)
    end)
  end)

  describe("default headers", function()
    it("sends user-agent, host, connection, te and authorization", function()
      local s = script_server(function(c)
        c:send("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
      end)
      local body
      run(function()
        body = http.request("http://user:p%40ss@127.0.0.1:" .. s.port .. "/path?q=1")
      end, nil, s)
      assert.equal("ok", body)
      local req = s.requests[1]
      assert.equal("GET /path?q=1 HTTP/1.1", req.line)
      assert.equal(http.USERAGENT, req.headers["user-agent"])
      assert.equal("127.0.0.1:" .. s.port, req.headers["host"])
      assert.equal("close, TE", req.headers["connection"])
      assert.equal("trailers", req.headers["te"])
      assert.equal("Basic dXNlcjpwQHNz", req.headers["authorization"])  -- user:p@ss
    end)

    it("merges caller headers over the defaults, case-insensitively", function()
      local s = script_server(function(c)
        c:send("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
      end)
      run(function()
        http.request { url = s.url .. "/", headers = { ["User-Agent"] = "spec/1", ["X-Test"] = "yes" } }
      end, nil, s)
      local req = s.requests[1]
      assert.equal("spec/1", req.headers["user-agent"])
      assert.equal("yes", req.headers["x-test"])
      local n = 0
      for _, name in ipairs(req.order) do
        if name:lower() == "user-agent" then n = n + 1 end
      end
      assert.equal(1, n)
    end)

    it("accepts host, port and path fields instead of a URL", function()
      local s = script_server(function(c)
        c:send("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nk")
      end)
      local sink, get = collect()
      local r, code
      run(function()
        r, code = http.request { host = "127.0.0.1", port = s.port, path = "/p", sink = sink }
      end, nil, s)
      assert.same({ 1, 200, "k" }, { r, code, get() })
      assert.equal("GET /p HTTP/1.1", s.requests[1].line)
      assert.equal("127.0.0.1:" .. s.port, s.requests[1].headers.host)
    end)

    it("uses http.USERAGENT as assigned", function()
      local s = script_server(function(c)
        c:send("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
      end)
      local old = http.USERAGENT
      http.USERAGENT = "changed/2"
      run(function() http.request(s.url) end, nil, s)
      http.USERAGENT = old
      assert.equal("changed/2", s.requests[1].headers["user-agent"])
    end)
  end)

  describe("request bodies", function()
    it("simple form with a body POSTs it form-encoded", function()
      local s = script_server(function(c, req)
        c:send("HTTP/1.1 201 Created\r\ncontent-length: " .. #req.body .. "\r\n\r\n" .. req.body)
      end)
      local body, code
      run(function() body, code = http.request(s.url .. "/form", "a=1&b=2") end, nil, s)
      assert.same({ "a=1&b=2", 201 }, { body, code })
      local req = s.requests[1]
      assert.equal("POST", req.method)
      assert.equal("application/x-www-form-urlencoded", req.headers["content-type"])
      assert.equal("7", req.headers["content-length"])
      assert.is_nil(req.headers["transfer-encoding"])
    end)

    it("sends a source without content-length chunked, with Transfer-Encoding", function()
      local s = script_server(function(c)
        c:send("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
      end)
      local parts = { "first", "second part", ("x"):rep(5000) }
      local r, code
      run(function()
        r, code = http.request { url = s.url .. "/up", method = "PUT",
          source = ltn12.source.table({ parts[1], parts[2], parts[3] }) }
      end, nil, s)
      assert.same({ 1, 200 }, { r, code })
      local req = s.requests[1]
      assert.equal("chunked", req.headers["transfer-encoding"])
      assert.is_nil(req.headers["content-length"])
      assert.equal(table.concat(parts), req.body)
      assert.same({ 5, 11, 5000, 0 }, req.chunk_sizes)
    end)

    it("sends a source with content-length as is", function()
      local s = script_server(function(c)
        c:send("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
      end)
      local data = ("0123456789"):rep(10000)
      run(function()
        http.request { url = s.url .. "/up", method = "POST",
          headers = { ["content-length"] = #data }, source = ltn12.source.string(data) }
      end, nil, s)
      local req = s.requests[1]
      assert.is_nil(req.headers["transfer-encoding"])
      assert.equal(data, req.body)
    end)
  end)

  describe("responses", function()
    local function serve_raw(raw)
      return script_server(function(c)
        c:send(raw)
      end)
    end

    it("reads a body until the server closes", function()
      local s = serve_raw("HTTP/1.0 200 OK\r\nx-a: 1\r\n\r\n" .. ("z"):rep(100000))
      local body, code
      run(function() body, code = http.request(s.url) end, nil, s)
      assert.equal(200, code)
      assert.equal(("z"):rep(100000), body)
    end)

    it("treats a reply without status line as HTTP/0.9", function()
      local s = serve_raw("hello world, no status line\n")
      local body, code, headers
      run(function() body, code, headers = http.request(s.url) end, nil, s)
      assert.same({ "hello world, no status line\n", 200 }, { body, code })
      assert.is_nil(headers)
    end)

    it("treats a reply shorter than a status line as HTTP/0.9", function()
      local s = serve_raw("hi")
      local body, code
      run(function() body, code = http.request(s.url) end, nil, s)
      assert.same({ "hi", 200 }, { body, code })
    end)

    it("skips 100-continue responses", function()
      local s = serve_raw("HTTP/1.1 100 Continue\r\nx-c: 1\r\n\r\n" ..
        "HTTP/1.1 100 Continue\r\n\r\n" ..
        "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone")
      local body, code, headers, status
      run(function() body, code, headers, status = http.request(s.url) end, nil, s)
      assert.same({ "done", 200, "HTTP/1.1 200 OK" }, { body, code, status })
      assert.is_nil(headers["x-c"])
    end)

    it("reads no body for a 1xx final response", function()
      -- the server keeps the connection open after the head: reading a body
      -- would hang until the timeout
      local s = script_server(function(c)
        c:send("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\nDATA")
        copas.pauseforever()
      end)
      local body, code
      run(function()
        body, code = http.request { url = s.url, timeout = 2 }
      end, nil, s)
      assert.same({ 1, 101 }, { body, code })
    end)

    it("unfolds folded header lines and joins repeated ones", function()
      local s = serve_raw("HTTP/1.1 200 OK\r\nX-Folded: one\r\n  two\r\n\tthree\r\n" ..
        "Set-Thing: a\r\nset-thing: b\r\nContent-Length: 0\r\n\r\n")
      local headers
      run(function() _, _, headers = http.request(s.url) end, nil, s)
      assert.equal("one two three", headers["x-folded"])
      assert.equal("a, b", headers["set-thing"])
    end)

    it("decodes chunk extensions and adds trailers to the headers", function()
      local s = serve_raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t1\r\n\r\n")
      local body, headers
      run(function() body, _, headers = http.request(s.url) end, nil, s)
      assert.equal("hello world", body)
      assert.equal("t1", headers["x-trailer"])
    end)
  end)

  describe("redirects", function()
    for _, code in ipairs { 301, 303, 307 } do
      it("follows " .. code .. " with an absolute-path Location", function()
        if not need_nginx() then return end
        local body, c, headers
        run(function() body, c, headers = http.request(srv.http .. "/r" .. code) end)
        assert.same({ srv.files.small.content, 200 }, { body, c })
        assert.equal(srv.http .. "/files/small.bin", headers.location)
      end)
    end

    it("does not follow 308", function()
      if not need_nginx() then return end
      local c, headers
      run(function() _, c, headers = http.request(srv.http .. "/r308") end)
      assert.equal(308, c)
      assert.equal(srv.http .. "/files/small.bin", headers.location)
    end)

    it("resolves a relative Location against the request URL", function()
      if not need_nginx() then return end
      local body, c, headers
      run(function() body, c, headers = http.request(srv.http .. "/relative") end)
      assert.same({ srv.files.small.content, 200 }, { body, c })
      assert.equal("files/small.bin", headers.location)
    end)

    it("does not follow for POST, nor with redirect = false, nor a blank Location", function()
      if not need_nginx() then return end
      local blank = script_server(function(c)
        c:send("HTTP/1.1 302 Found\r\nLocation:  \r\nContent-Length: 0\r\n\r\n")
      end)
      local c1, c2, c3
      run(function()
        _, c1 = http.request(srv.http .. "/r301", "x=1")
        _, c2 = http.request { url = srv.http .. "/r301", redirect = false }
        _, c3 = http.request(blank.url)
      end, nil, blank)
      assert.same({ 301, 301, 302 }, { c1, c2, c3 })
    end)

    it("stops after 5 redirects by default and returns that redirect", function()
      if not need_nginx() then return end
      local c, headers, body
      run(function() body, c, headers = http.request(srv.http .. "/chain/7") end)
      assert.equal(302, c)
      assert.equal("/chain/1", headers.location)
      assert.matches("302", body)
    end)

    it("honours maxredirects (number and false)", function()
      if not need_nginx() then return end
      local r = {}
      run(function()
        local sink, get = collect()
        local _, c, h = http.request { url = srv.http .. "/chain/7", maxredirects = 10, sink = sink }
        r[1] = { c, get(), h.location }
        _, c, h = http.request { url = srv.http .. "/chain/9", maxredirects = false }
        r[2] = { c, h.location }
        _, c, h = http.request { url = srv.http .. "/chain/2", maxredirects = 0 }
        r[3] = { c, h.location }
        _, c, h = http.request { url = srv.http .. "/chain/3", maxredirects = 2 }
        r[4] = { c, h.location }
      end)
      assert.same({ 200, "end of chain", "/chain/0" }, r[1])
      assert.same({ 200, "/chain/0" }, r[2])
      assert.same({ 302, "/chain/1" }, r[3])
      assert.same({ 302, "/chain/0" }, r[4])
    end)

    it("keeps HEAD as HEAD and carries headers over", function()
      local s
      s = script_server(function(c, _, n)
        if n == 1 then
          c:send("HTTP/1.1 302 Found\r\nLocation: /second\r\nContent-Length: 0\r\n\r\n")
        else
          c:send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        end
      end)
      local r, c, h
      run(function()
        r, c, h = http.request { url = s.url .. "/first", method = "HEAD",
          headers = { ["x-test"] = "carried" } }
      end, nil, s)
      assert.same({ 1, 200, "/second" }, { r, c, h.location })
      assert.equal(2, #s.requests)
      assert.equal("HEAD /second HTTP/1.1", s.requests[2].line)
      assert.equal("carried", s.requests[2].headers["x-test"])
    end)

    it("follows http to https", function()
      if not need_nginx() then return end
      local body, c
      run(function()
        local sink, get = collect()
        _, c = http.request { url = srv.http .. "/to-https", sink = sink,
          sslparams = { wrap = { cafile = srv.cafile } } }
        body = get()
      end)
      assert.same({ srv.files.small.content, 200 }, { body, c })
    end)

    it("refuses https to http, anywhere in the chain, unless redirect = 'all'", function()
      if not need_nginx() then return end
      local r1, e1, r2, c2
      run(function()
        r1, e1 = http.request { url = srv.https .. "/to-http-chain",
          sslparams = { wrap = { cafile = srv.cafile } } }
        r2, c2 = http.request { url = srv.https .. "/to-http-chain", redirect = "all",
          sslparams = { wrap = { cafile = srv.cafile } } }
      end)
      assert.same({ nil, "Unallowed insecure redirect https to http" }, { r1, e1 })
      assert.same({ 1, 200 }, { r2, c2 })
    end)

    it("names the host of each hop in SNI (getcreatefunc)", function()
      local create = http.getcreatefunc { sslparams = { wrap = { verify = "none" } } }
      local a = create { url = "https://first.test/" }
      local b = create { url = "https://second.test:8443/x" }
      local ip = create { url = "https://127.0.0.1/" }
      assert.equal("first.test", a.ssl_params.sni.names)
      assert.equal("second.test", b.ssl_params.sni.names)
      assert.is_false(ip.ssl_params.sni)  -- no SNI for IP literals (RFC 6066)
      assert.equal("client", a.ssl_params.wrap.mode)
      assert.equal("tlsv1_2", a.ssl_params.wrap.protocol)
      local fixed = http.getcreatefunc { sslparams = { sni = { names = "fixed.test" } } }
      assert.equal("fixed.test", fixed({ url = "https://other.test/" }).ssl_params.sni.names)
      for _, s in ipairs { a, b, ip } do s:close() end
    end)

    it("getcreatefunc refuses plain http after https unless redirect = 'all'", function()
      local create = http.getcreatefunc {}
      create({ url = "https://first.test/" }):close()
      local ok, err = pcall(create, { url = "http://second.test/" })
      assert.is_false(ok)
      assert.matches("Unallowed insecure redirect https to http", tostring(err), 1, true)
      local all = http.getcreatefunc { redirect = "all" }
      all({ url = "https://first.test/" }):close()
      local s = all { url = "http://second.test/" }
      assert.is_truthy(tostring(s):match("copas wrapped"))
      s:close()
    end)
  end)

  describe("TLS verification", function()
    local function get(params, name)
      params.url = params.url or (srv.https .. srv.files.small.path)
      if name then
        params.sslparams = params.sslparams or {}
        params.sslparams.sni = { names = name }
      end
      local sink, body = collect()
      params.sink = sink
      local r, c = http.request(params)
      return r, c, body()
    end

    it("rejects the test CA with the default (system store) verification", function()
      if not need_nginx() then return end
      local r, e
      run(function() r, e = http.request(srv.https .. srv.files.small.path) end)
      assert.is_nil(r)
      assert.equal("TLS/SSL handshake failed: certificate verify failed", e)
    end)

    it("accepts it with verify = 'none' (per request, legacy field, module-wide)", function()
      if not need_nginx() then return end
      local res = {}
      run(function()
        res[1] = { get { sslparams = { wrap = { verify = "none" } } } }
        res[2] = { get { verify = "none" } }
        http.SSLVERIFY = "none"
        res[3] = { get {} }
      end)
      for i = 1, 3 do assert.same({ 1, 200, srv.files.small.content }, res[i]) end
    end)

    it("checks the host name: IP SAN, DNS SAN, wildcard, CN fallback", function()
      if not need_nginx() then return end
      local res = {}
      run(function()
        local function ca() return { sslparams = { wrap = { cafile = srv.cafile } } } end
        res.ip = { get(ca()) }
        res.dns = { get(ca(), "copas.test") }
        res.wild = { get(ca(), "a.wild.test") }
        res.cn = { get(ca(), "cnonly.test") }
        res.deep = { get(ca(), "a.b.wild.test") }
        res.mismatch = { get(ca(), "mismatch.test") }
      end)
      local ok = { 1, 200, srv.files.small.content }
      assert.same(ok, res.ip)
      assert.same(ok, res.dns)
      assert.same(ok, res.wild)
      assert.same(ok, res.cn)
      assert.same({ nil, "TLS/SSL handshake failed: certificate does not match host name " ..
        "'a.b.wild.test'", "" }, res.deep)
      assert.same({ nil, "TLS/SSL handshake failed: certificate does not match host name " ..
        "'mismatch.test'", "" }, res.mismatch)
    end)

    it("rejects expired and self-signed certificates", function()
      if not need_nginx() then return end
      local res = {}
      run(function()
        res[1] = { get({ sslparams = { wrap = { cafile = srv.cafile } } }, "expired.test") }
        res[2] = { get({ sslparams = { wrap = { cafile = srv.cafile } } }, "self.test") }
      end)
      assert.same({ nil, "TLS/SSL handshake failed: certificate verify failed", "" }, res[1])
      assert.same({ nil, "TLS/SSL handshake failed: certificate verify failed", "" }, res[2])
    end)

    it("returns (does not raise) a handshake failure against a plain server", function()
      if not need_nginx() then return end
      local r, e
      -- a raised error would fail run() through the thread's error handler
      run(function()
        r, e = http.request("https://127.0.0.1:" .. srv.http_port .. "/")
      end)
      assert.is_nil(r)
      assert.matches("^TLS/SSL handshake failed: ", e)
    end)
  end)

  describe("proxy and create", function()
    it("sends the absolute URL to t.proxy and to http.PROXY", function()
      local s = script_server(function(c)
        c:send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nproxy")
      end)
      local b1, b2
      run(function()
        local sink, get = collect()
        http.request { url = "http://example.invalid:8080/a?b=c", proxy = s.url, sink = sink }
        b1 = get()
        http.PROXY = s.url
        b2 = http.request("http://example.invalid/z")
      end, nil, s)
      assert.same({ "proxy", "proxy" }, { b1, b2 })
      assert.equal("GET http://example.invalid:8080/a?b=c HTTP/1.1", s.requests[1].line)
      assert.equal("example.invalid:8080", s.requests[1].headers.host)
      assert.equal("GET http://example.invalid/z HTTP/1.1", s.requests[2].line)
    end)

    -- a CONNECT proxy that tunnels to 127.0.0.1:<port> (or refuses with `deny`)
    local function connect_proxy(deny)
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      local p = { url = "http://127.0.0.1:" .. port, lines = {} }
      local function pipe(from, to)
        while true do
          local data, err, partial = from:receivepartial(65536)
          local chunk = data or partial
          if chunk and #chunk > 0 and not to:send(chunk) then break end
          if err and err ~= "timeout" then break end
        end
        from:close()
        to:close()
      end
      copas.addserver(server, copas.handler(function(c)
        local line = c:receive("*l")
        p.lines[#p.lines + 1] = line
        repeat local h = c:receive("*l") until not h or h == ""
        if deny then
          c:send("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
          return
        end
        local target = tonumber(line:match("^CONNECT 127%.0%.0%.1:(%d+) "))
        local up = copas.wrap(socket.tcp())
        assert(up:connect("127.0.0.1", target))
        c:send("HTTP/1.1 200 Connection established\r\n\r\n")
        copas.addthread(pipe, up, c)
        pipe(c, up)
      end))
      function p.stop() copas.removeserver(server) end
      return p
    end

    it("tunnels https through the proxy with CONNECT", function()
      if not need_nginx() then return end
      local proxy = connect_proxy()
      local r, c, body
      run(function()
        local sink, get = collect()
        r, c = http.request { url = srv.https .. srv.files.medium.path, proxy = proxy.url,
          sink = sink, sslparams = { wrap = { cafile = srv.cafile } } }
        body = get()
      end, nil, proxy)
      assert.same({ 1, 200 }, { r, c })
      assert.is_true(body == srv.files.medium.content)
      assert.same({ "CONNECT 127.0.0.1:" .. srv.https_port .. " HTTP/1.1" }, proxy.lines)
    end)

    it("returns nil, msg when the proxy refuses CONNECT", function()
      local proxy = connect_proxy(true)
      local r, e
      run(function()
        r, e = http.request { url = "https://127.0.0.1:1/", proxy = proxy.url }
      end, nil, proxy)
      assert.same({ nil, "proxy CONNECT failed: HTTP/1.1 403 Forbidden" }, { r, e })
    end)

    it("uses t.create for the socket", function()
      local s = script_server(function(c)
        c:send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
      end)
      local calls, r, c = 0, nil, nil
      run(function()
        r, c = http.request { url = s.url, create = function()
          calls = calls + 1
          return copas.wrap(socket.tcp())
        end }
      end, nil, s)
      assert.same({ 1, 200, 1 }, { r, c, calls })
    end)

    it("LuaSocket's socket.http.request runs on a Copas socket from create", function()
      if not need_nginx() then return end
      local shttp = require "socket.http"
      local r, c, body
      run(function()
        local sink, get = collect()
        r, c = shttp.request { url = srv.http .. srv.files.medium.path, sink = sink,
          create = function() return copas.wrap(socket.tcp()) end }
        body = get()
      end)
      assert.same({ 1, 200 }, { r, c })
      assert.is_true(body == srv.files.medium.content)
    end)
  end)

  describe("timeouts", function()
    it("raises for an unknown key in a timeout table", function()
      assert.has_error(function()
        http.request { url = "http://127.0.0.1:1/", timeout = { connect = 1, recieve = 2 } }
      end, "'recieve' is not a valid timeout option. Valid: 'connect', 'send', 'receive'")
    end)

    it("times out a server that never answers (number and table forms)", function()
      local s = script_server(function()
        copas.pauseforever()
      end)
      local r1, e1, r2, e2, t1, t2
      run(function()
        local t0 = copas.gettime()
        r1, e1 = http.request { url = s.url, timeout = 0.2 }
        t1 = copas.gettime() - t0
        t0 = copas.gettime()
        r2, e2 = http.request { url = s.url, timeout = { receive = 0.3 } }
        t2 = copas.gettime() - t0
      end, 10, s)
      assert.same({ nil, "timeout" }, { r1, e1 })
      assert.same({ nil, "timeout" }, { r2, e2 })
      assert.is_true(t1 >= 0.2 and t1 < 2, "took " .. t1)
      assert.is_true(t2 >= 0.3 and t2 < 2, "took " .. t2)
    end)

    it("times out a server stalling mid-headers and mid-body", function()
      local s = script_server(function(c, _, n)
        if n == 1 then
          c:send("HTTP/1.1 200 OK\r\nContent-Le")
        else
          c:send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        end
        copas.pauseforever()
      end)
      local r1, e1, r2, e2
      run(function()
        r1, e1 = http.request { url = s.url, timeout = 0.2 }
        r2, e2 = http.request { url = s.url, timeout = 0.2 }
      end, 10, s)
      assert.same({ nil, "timeout" }, { r1, e1 })
      assert.same({ nil, "timeout" }, { r2, e2 })
    end)

    it("times out sending to a server that does not read", function()
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      local s = { stop = function() copas.removeserver(server) end }
      copas.addserver(server, function() copas.pauseforever() end)
      local r, e
      local data = ("x"):rep(32 * 1024 * 1024)
      run(function()
        r, e = http.request { url = "http://127.0.0.1:" .. port .. "/", method = "PUT",
          timeout = { send = 0.3 }, headers = { ["content-length"] = #data },
          source = ltn12.source.string(data), step = ltn12.pump.step }
      end, 10, s)
      assert.same({ nil, "timeout" }, { r, e })
    end)
  end)

  describe("bad input", function()
    it("returns nil, msg for malformed URLs and unknown schemes", function()
      local res = {}
      run(function()
        res[1] = { http.request("http://") }
        res[2] = { http.request("not a url") }
        res[3] = { http.request("ftp://127.0.0.1/file") }
        res[4] = { http.request { url = "gopher://127.0.0.1/" } }
        res[5] = { http.request("http://127.0.0.1:notaport/") }
      end)
      assert.same({ nil, "invalid host 'nil'" }, res[1])
      assert.same({ nil, "invalid host 'nil'" }, res[2])
      assert.same({ nil, "unsupported scheme 'ftp'" }, res[3])
      assert.same({ nil, "unsupported scheme 'gopher'" }, res[4])
      assert.is_nil(res[5][1])
      assert.is_string(res[5][2])
    end)

    it("returns 'connection refused' for a closed port", function()
      local port = helpers.free_port()
      local r, e
      run(function() r, e = http.request("http://127.0.0.1:" .. port .. "/") end)
      assert.same({ nil, "connection refused" }, { r, e })
    end)

    local function bad(raw)
      local s = script_server(function(c)
        if type(raw) == "function" then raw(c) else c:send(raw) end
      end)
      local r, e
      run(function() r, e = http.request { url = s.url, timeout = 5 } end, 10, s)
      return r, e
    end

    it("returns nil, msg for a garbage status line", function()
      local r, e = bad("HTTP/1.1 abc\r\n\r\n")
      assert.same({ nil, "HTTP/1.1 abc" }, { r, e })
    end)

    it("returns nil, msg for malformed headers", function()
      local r, e = bad("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")
      assert.same({ nil, "malformed reponse headers" }, { r, e })
    end)

    it("gives up on endless headers", function()
      local r, e = bad(function(c)
        c:send("HTTP/1.1 200 OK\r\n")
        for i = 1, 20000 do
          if not c:send("X-Endless-" .. i .. ": yes\r\n") then break end
        end
      end)
      assert.same({ nil, "response headers too large" }, { r, e })
    end)

    it("returns 'closed' for a body shorter than Content-Length", function()
      local r, e = bad("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
      assert.same({ nil, "closed" }, { r, e })
    end)

    it("returns 'invalid chunk size' for a bad chunked body", function()
      local r, e = bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
      assert.same({ nil, "invalid chunk size" }, { r, e })
    end)
  end)

  describe("concurrency", function()
    it("runs 1000 requests 50 at a time through copas.limit, bodies verified", function()
      if not need_nginx() then return end
      local limit = require "copas.limit"
      local set = limit.new(50)
      local ok, bad, max_running, running = 0, {}, 0, 0
      local files = { srv.files.small, srv.files.medium }
      run(function()
        for i = 1, 1000 do
          set:addthread(function()
            running = running + 1
            if running > max_running then max_running = running end
            local f = files[i % 2 + 1]
            local base = i % 10 == 0 and srv.https or srv.http
            local sink, get = collect()
            local r, code = http.request { url = base .. f.path, sink = sink,
              sslparams = { wrap = { cafile = srv.cafile } } }
            local body = get()
            if r == 1 and code == 200 and #body == #f.content and body == f.content then
              ok = ok + 1
            else
              bad[#bad + 1] = i .. ": " .. tostring(code) .. " " .. #body
            end
            running = running - 1
          end)
        end
        set:wait()
      end, 120)
      assert.same({}, bad)
      assert.equal(1000, ok)
      assert.is_true(max_running > 1 and max_running <= 50, "max running " .. max_running)
    end)

    it("a stalled request does not hold up others", function()
      if not need_nginx() then return end
      local release, stalled = false, nil
      local s = script_server(function(c)
        if not release then
          stalled = coroutine.running()
          copas.pauseforever()
        end
        c:send("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
      end)
      local order = {}
      run(function()
        local main = coroutine.running()
        copas.addthread(function()
          local b = http.request(s.url)
          order[#order + 1] = b
          copas.wakeup(main)
        end)
        copas.addthread(function()
          local b = http.request(srv.http .. srv.files.large.path)
          order[#order + 1] = #b
          release = true
          if stalled then copas.wakeup(stalled) end
        end)
        copas.pauseforever()
      end, 20, s)
      assert.same({ 10485760, "slow" }, order)
    end)
  end)
end)
