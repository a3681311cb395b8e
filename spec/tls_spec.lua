-- TLS through LuaSec (API.md sections 5, 6 and 7): server and mutual
-- authentication, SNI, ALPN, copas.dohandshake, copas.handler with TLS,
-- handshake failures and timeouts, TLS timeouts and large transfers.
-- Certificates are made at test time (spec/certs.lua).
local helpers = require "spec.helpers"
local certs = require "spec.certs"
local socket = require "socket"
local has_ssl, ssl = pcall(require, "ssl")

local copas
local errors
local c          -- the certificate paths

local function fresh_copas()
  copas, errors = helpers.reload_strict()
end

local function run(fn, timeout)
  helpers.run_strict(errors, fn, timeout)
end

local listen = helpers.listen

local function pack(...) return { ... } end

-- pcall that lets `fn` yield to copas (PUC Lua 5.1 cannot yield across
-- pcall: there `fn` runs in a coroutine whose yields are passed on)
local unpack = table.unpack or unpack  -- luacheck: ignore 143
local ypcall = pcall
if _VERSION == "Lua 5.1" and not rawget(_G, "jit") then
  ypcall = function(fn, ...)
    local co = coroutine.create(fn)
    local res = { coroutine.resume(co, ...) }
    while true do
      if not res[1] then return false, res[2] end
      if coroutine.status(co) == "dead" then return true, unpack(res, 2) end
      res = { coroutine.resume(co, coroutine.yield(unpack(res, 2))) }
    end
  end
end

local has_ipv6 = (function()
  local s = socket.bind("::1", 0)
  if s then s:close() return true end
  return false
end)()

local function skip()
  if not has_ssl then return "LuaSec not available" end
  if not c then return "openssl not available" end
end

-- the CN of the peer certificate of a TLS socket
local function peer_cn(skt)
  local cert = skt:getpeercertificate()
  if not cert then return nil end
  for _, field in ipairs(cert:subject()) do
    if field.name == "commonName" then return field.value end
  end
end

-- a TLS server with copas.handler; returns server and port
local function tls_server(serve, sslparams, host, timeout)
  local server, port = listen(host)
  copas.addserver(server, copas.handler(serve, sslparams), timeout)
  return server, port
end


describe("TLS", function()
  setup(function()
    if has_ssl and certs.available() then c = certs.generate() end
  end)
  teardown(function() certs.cleanup(c) end)
  before_each(fresh_copas)

  describe("server authentication", function()
    for _, host in ipairs { "127.0.0.1", "::1" } do
      it("verifies the server against the CA and carries data over " .. host, function()
        if skip() then pending(skip()) return end
        if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
        local server_got
        local server, port = tls_server(function(w)
          server_got = w:receive()
          w:send("pong\n")
        end, certs.server_params(c), host)
        local cn, line
        run(function()
          local w = copas.wrap(socket.tcp(), certs.client_params(c))
          assert(w:connect(host, port))
          cn = peer_cn(w.socket)
          w:send("ping\n")
          line = w:receive()
          w:close()
          copas.removeserver(server)
        end)
        assert.equal("copas test server", cn)
        assert.equal("ping", server_got)
        assert.equal("pong", line)
      end)
    end

    it("fails the handshake of a client that does not trust the server: it raises", function()
      if skip() then pending(skip()) return end
      local called = false
      local server, port = tls_server(function() called = true end, certs.server_params(c))
      local ok, err
      helpers.run(function()
        local w = copas.wrap(socket.tcp(), certs.client_params(c, { cafile = c.other_ca_cert }))
        ok, err = ypcall(w.connect, w, "127.0.0.1", port)
        w:close()
        copas.pause(0.05)
        copas.removeserver(server)
      end)
      assert.is_false(ok)
      assert.matches("TLS/SSL handshake failed: ", tostring(err), 1, true)
      assert.is_false(called)
    end)
  end)

  describe("mutual authentication", function()
    local function mutual()
      return certs.server_params(c, "server", {
        verify = { "peer", "fail_if_no_peer_cert" },
        -- TLS 1.2: the server's verdict on the client certificate arrives
        -- inside the client's handshake
        protocol = "tlsv1_2",
      })
    end

    it("accepts a client with a certificate signed by the CA", function()
      if skip() then pending(skip()) return end
      local client_cn
      local server, port = tls_server(function(w)
        client_cn = peer_cn(w.socket)
        w:send("welcome\n")
      end, mutual())
      local line
      run(function()
        local w = copas.wrap(socket.tcp(), certs.client_params(c, {
          certificate = c.client_cert, key = c.client_key }))
        assert(w:connect("127.0.0.1", port))
        line = w:receive()
        w:close()
        copas.removeserver(server)
      end)
      assert.equal("copas test client", client_cn)
      assert.equal("welcome", line)
    end)

    it("refuses a client without a certificate; the handler is not called", function()
      if skip() then pending(skip()) return end
      local called = false
      local server, port = tls_server(function() called = true end, mutual())
      local ok, res
      helpers.run(function()
        local w = copas.wrap(socket.tcp(), certs.client_params(c))
        ok, res = ypcall(w.connect, w, "127.0.0.1", port)
        if ok and res then res = pack(w:receive()) end
        w:close()
        for _ = 1, 10 do if #errors > 0 then break end copas.pause(0.01) end
        copas.removeserver(server)
      end)
      assert.is_false(called)
      assert.is_false(ok, "client handshake succeeded")
      assert.matches("TLS/SSL handshake failed: ", tostring(res), 1, true)
      assert.equal(1, #errors)
      assert.matches("TLS/SSL handshake failed", errors[1], 1, true)
    end)
  end)

  describe("SNI", function()
    local function sni_server(strict)
      local contexts = {
        [certs.sni_names[1]] = assert(ssl.newcontext(certs.server_params(c, "alpha"))),
        [certs.sni_names[2]] = assert(ssl.newcontext(certs.server_params(c, "beta"))),
      }
      local seen = {}
      local server, port = tls_server(function(w)
        seen[#seen + 1] = w:getsniname()
        w:send("hello\n")
      end, { wrap = certs.server_params(c), sni = { names = contexts, strict = strict } })
      return server, port, seen
    end

    local function connect_as(name, port)
      local w = copas.wrap(socket.tcp(), { wrap = certs.client_params(c), sni = { names = name } })
      local ok, err = ypcall(w.connect, w, "127.0.0.1", port)
      if not ok then return nil, err end
      local cn = peer_cn(w.socket)
      local line = w:receive()
      w:close()
      return cn, line
    end

    it("selects the certificate by the name the client sends", function()
      if skip() then pending(skip()) return end
      local server, port, seen = sni_server(true)
      local a, b
      run(function()
        a = pack(connect_as(certs.sni_names[1], port))
        b = pack(connect_as(certs.sni_names[2], port))
        copas.removeserver(server)
      end)
      assert.same({ certs.sni_names[1], "hello" }, a)
      assert.same({ certs.sni_names[2], "hello" }, b)
      assert.same(certs.sni_names, seen)
    end)

    it("with strict refuses an unknown name", function()
      if skip() then pending(skip()) return end
      local server, port, seen = sni_server(true)
      local r
      helpers.run(function()
        r = pack(connect_as("unknown.copas.test", port))
        for _ = 1, 10 do if #errors > 0 then break end copas.pause(0.01) end
        copas.removeserver(server)
      end)
      assert.is_nil(r[1])
      assert.matches("TLS/SSL handshake failed: ", tostring(r[2]), 1, true)
      assert.same({}, seen)
    end)

    it("without strict serves an unknown name with the default certificate", function()
      if skip() then pending(skip()) return end
      local server, port = sni_server(false)
      local r
      run(function()
        r = pack(connect_as("unknown.copas.test", port))
        copas.removeserver(server)
      end)
      assert.same({ "copas test server", "hello" }, r)
    end)
  end)

  describe("ALPN", function()
    it("negotiates the protocol both sides support", function()
      if skip() then pending(skip()) return end
      local server_alpn
      local server, port = tls_server(function(w)
        server_alpn = w:getalpn()
        w:send("x\n")
      end, certs.server_params(c, "server", { alpn = { "h2", "http/1.1" } }))
      local client_alpn
      run(function()
        local w = copas.wrap(socket.tcp(), certs.client_params(c, { alpn = { "http/1.1" } }))
        assert(w:connect("127.0.0.1", port))
        client_alpn = w:getalpn()
        w:receive()
        w:close()
        copas.removeserver(server)
      end)
      assert.equal("http/1.1", client_alpn)
      assert.equal("http/1.1", server_alpn)
    end)
  end)

  describe("copas.dohandshake()", function()
    it("returns the new TLS socket, with the plain socket's timeouts and name", function()
      if skip() then pending(skip()) return end
      local server, port = tls_server(function(w)
        w:send("no line end")
        w:receive()                       -- until the client goes
      end, certs.server_params(c))
      local tls, r, elapsed, name
      run(function()
        local skt = socket.tcp()
        assert(copas.connect(skt, "127.0.0.1", port))
        copas.settimeout(skt, 0.2)
        copas.setsocketname("my tls client", skt)
        tls = copas.dohandshake(skt, certs.client_params(c))
        name = copas.getsocketname(tls)
        local t0 = copas.gettime()
        r = pack(copas.receive(tls, "*l"))
        elapsed = copas.gettime() - t0
        tls:close()
        copas.removeserver(server)
      end)
      assert.is_function(tls.getpeercertificate)
      assert.equal("my tls client", name)
      assert.same({ nil, "timeout", "no line end" }, r)
      assert.is_true(elapsed >= 0.2)
    end)

    it("raises without parameters", function()
      if skip() then pending(skip()) return end
      local ok, err = pcall(copas.dohandshake, socket.tcp(), nil)
      assert.is_false(ok)
      assert.matches("cannot wrap socket into a secure socket (using 'ssl.wrap()') without parameters/context",
        tostring(err), 1, true)
    end)

    it("raises 'TLS/SSL handshake failed: ...' when the peer is not TLS", function()
      if skip() then pending(skip()) return end
      local server, port = listen()
      copas.addserver(server, function(skt)
        copas.send(skt, "this is not TLS at all\r\n\r\n")
      end)
      local ok, err
      run(function()
        local skt = socket.tcp()
        assert(copas.connect(skt, "127.0.0.1", port))
        ok, err = ypcall(copas.dohandshake, skt, certs.client_params(c))
        skt:close()
        copas.removeserver(server)
      end)
      assert.is_false(ok)
      assert.matches("TLS/SSL handshake failed: ", tostring(err), 1, true)
    end)
  end)

  describe("handshake timeouts", function()
    -- A TCP server that accepts and never says anything. After a handshake
    -- timeout the client cannot close the connection: its descriptor moved
    -- into the TLS socket that dohandshake dropped (as in 4.11), so the
    -- test ends the handlers itself with `stop()`.
    local function silent_server()
      local server, port = listen()
      local accepted = {}
      copas.addserver(server, function(skt)
        accepted[#accepted + 1] = skt
        copas.receive(skt, "*a")
      end)
      local function stop()
        copas.removeserver(server)
        for _, skt in ipairs(accepted) do copas.close(skt) end
      end
      return stop, port
    end

    it("make the client's connect return nil, 'timeout' (raw: 'wantread')", function()
      if skip() then pending(skip()) return end
      local stop, port = silent_server()
      local r, raw, elapsed
      run(function()
        local w = copas.wrap(socket.tcp(), certs.client_params(c))
        w:settimeouts(0.3, nil, nil)       -- the handshake uses the connect timeout
        local t0 = copas.gettime()
        r = pack(w:connect("127.0.0.1", port))
        elapsed = copas.gettime() - t0
        w:close()
        local w2 = copas.wrap(socket.tcp(), certs.client_params(c))
        w2:settimeout(0.1)
        copas.useSocketTimeoutErrors(true)
        raw = pack(w2:connect("127.0.0.1", port))
        w2:close()
        stop()
      end)
      assert.same({ nil, "timeout" }, r)
      assert.is_true(elapsed >= 0.3)
      assert.same({ nil, "wantread" }, raw)
    end)

    it("in copas.handler raise, the handler never runs, and other clients are served", function()
      if skip() then pending(skip()) return end
      local handled = {}
      local server, port = tls_server(function(w)
        handled[#handled + 1] = w:receive()
        w:send("served\n")
      end, certs.server_params(c), nil, 0.5)
      local staller, line, stall_done
      helpers.run(function()
        -- a raw client that connects and then sends nothing
        staller = socket.tcp()
        assert(copas.connect(staller, "127.0.0.1", port))
        -- meanwhile a real TLS client is served
        local w = copas.wrap(socket.tcp(), certs.client_params(c))
        assert(w:connect("127.0.0.1", port))
        w:send("real client\n")
        line = w:receive()
        w:close()
        -- the stalled connection is dropped once the handshake timed out
        local r = pack(copas.receive(staller, "*a"))
        stall_done = r
        staller:close()
        copas.removeserver(server)
      end, 10)
      assert.equal("served", line)
      assert.same({ "real client" }, handled)
      assert.is_truthy(stall_done)
      assert.equal(1, #errors)
      assert.matches("timeout", errors[1], 1, true)
    end)

    it("in copas.handler: a failed handshake raises and the handler never runs", function()
      if skip() then pending(skip()) return end
      local called = false
      local server, port = tls_server(function() called = true end, certs.server_params(c))
      helpers.run(function()
        local skt = socket.tcp()
        assert(copas.connect(skt, "127.0.0.1", port))
        copas.send(skt, "GET / HTTP/1.0\r\n\r\n")
        copas.receive(skt, "*a")          -- until the server drops us
        skt:close()
        copas.removeserver(server)
      end)
      assert.is_false(called)
      assert.equal(1, #errors)
      assert.matches("TLS/SSL handshake failed", errors[1], 1, true)
    end)
  end)

  describe("timeouts on a TLS socket", function()
    it("receive returns nil, 'timeout', partial; raw mode gives 'wantread'", function()
      if skip() then pending(skip()) return end
      local server, port = tls_server(function(w)
        w:send("partial")
        w:receive()
      end, certs.server_params(c))
      local r, raw
      run(function()
        local w = copas.wrap(socket.tcp(), certs.client_params(c))
        assert(w:connect("127.0.0.1", port))
        w:settimeout(0.2)
        r = pack(w:receive("*l"))
        copas.useSocketTimeoutErrors(true)
        raw = pack(w:receive("*l", r[3]))
        w:close()
        copas.removeserver(server)
      end)
      assert.same({ nil, "timeout", "partial" }, r)
      assert.same({ nil, "wantread", "partial" }, raw)
    end)
  end)

  describe("autoclose", function()
    it("closes the TLS socket that replaced the accepted client", function()
      if skip() then pending(skip()) return end
      local server, port = tls_server(function(w) w:send("bye\n") end, certs.server_params(c))
      local r1, r2
      run(function()
        local w = copas.wrap(socket.tcp(), certs.client_params(c))
        assert(w:connect("127.0.0.1", port))
        r1 = pack(w:receive())
        r2 = pack(w:receive())
        w:close()
        copas.removeserver(server)
      end)
      assert.same({ "bye" }, r1)
      assert.same({ nil, "closed" }, { r2[1], r2[2] })
    end)
  end)

  describe("large transfers", function()
    -- COPAS_TLS_MB lowers the megabytes per direction (make valgrind)
    local CONNS, CHUNK = 10, 64 * 1024
    local SIZE = math.max(1, math.floor(tonumber(os.getenv("COPAS_TLS_MB") or "") or 20)) * 1024 * 1024
    local NCHUNKS = SIZE / CHUNK
    local base do
      local t = {}
      local x = 54321
      for i = 1, CHUNK do
        x = (x * 1103515245 + 12345) % 2147483648
        t[i] = string.char(math.floor(x / 65536) % 256)
      end
      base = table.concat(t)
    end
    local function chunk(dir, conn, i)
      local head = ("%s%03d:%06d:"):format(dir, conn, i)
      return head .. base:sub(#head + 1)
    end

    it(("moves %d MB each way on %d TLS connections at once, intact"):format(SIZE / 2^20, CONNS), function()
      if skip() then pending(skip()) return end
      local done, bad = 0, {}
      local function pump(w, out_dir, in_dir, conn)
        local sender_done = false
        copas.addthread(function()
          for i = 1, NCHUNKS do
            local last, err = w:send(chunk(out_dir, conn, i))
            if last ~= CHUNK then bad[#bad + 1] = "send: " .. tostring(err) break end
          end
          sender_done = true
        end)
        for i = 1, NCHUNKS do
          local data, err = w:receive(CHUNK)
          if data ~= chunk(in_dir, conn, i) then
            bad[#bad + 1] = ("conn %d chunk %d: %s"):format(conn, i, tostring(err or "differs"))
            break
          end
        end
        while not sender_done do copas.pause(0.01) end
        done = done + 1
      end
      local server, port = tls_server(function(w)
        local conn = tonumber(w:receive("*l"))
        pump(w, "S", "C", conn)
      end, certs.server_params(c))
      run(function()
        for conn = 1, CONNS do
          copas.addthread(function()
            local w = copas.wrap(socket.tcp(), certs.client_params(c))
            assert(w:connect("127.0.0.1", port))
            w:send(conn .. "\n")
            pump(w, "C", "S", conn)
            w:close()
          end)
        end
        while done < 2 * CONNS and #bad == 0 do copas.pause(0.05) end
        copas.removeserver(server)
      end, 180)
      assert.same({}, bad)
      assert.equal(2 * CONNS, done)
    end)
  end)
end)
