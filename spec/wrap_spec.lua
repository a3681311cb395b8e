-- copas.wrap and the TCP wrapper's methods (API.md section 7), socket
-- names and copas.debug.socket. The UDP wrapper is in udp_spec.lua.
local helpers = require "spec.helpers"
local certs = require "spec.certs"
local socket = require "socket"

local copas
local errors

local function fresh_copas()
  copas, errors = helpers.reload_strict()
end

local function run(fn, timeout)
  helpers.run_strict(errors, fn, timeout)
end

local listen = helpers.listen
local pair = helpers.pair

local function pack(...) return { ... } end

-- replaces _G.print while fn runs; returns the printed lines
local function capture_print(fn)
  local out = {}
  local old = _G.print
  _G.print = function(...)
    local t = {}
    for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
    out[#out + 1] = table.concat(t, "\t")
  end
  local ok, err = pcall(fn)
  _G.print = old
  assert(ok, err)
  return out
end


describe("copas.wrap()", function()
  before_each(fresh_copas)

  it("returns a wrapper around the socket and the same wrapper when wrapped twice", function()
    local t = socket.tcp()
    local w = copas.wrap(t)
    assert.equal(t, w.socket)
    assert.equal(w, copas.wrap(w))
    assert.equal(w, copas.wrap(w, { mode = "client", protocol = "any" }))
    t:close()
  end)

  it("prints as the socket followed by ' (copas wrapped)'", function()
    local t = socket.tcp()
    local w = copas.wrap(t)
    assert.equal(tostring(t) .. " (copas wrapped)", tostring(w))
    t:close()
  end)

  it("sets the LuaSocket timeout of the socket to 0", function()
    local a, b = pair()
    b:settimeout(10)
    copas.wrap(b)
    local t0 = socket.gettime()
    assert.same({ nil, "timeout", "" }, pack(b:receive()))     -- does not block
    assert.is_true(socket.gettime() - t0 < 1)
    a:close() b:close()
  end)

  it("normalises the ssl parameters it accepts", function()
    local t = socket.tcp()
    assert.same({ wrap = false, sni = false }, copas.wrap(t).ssl_params)
    local legacy = { mode = "client", protocol = "any" }
    assert.same({ wrap = legacy, sni = false }, copas.wrap(socket.tcp(), legacy).ssl_params)
    local proto = { protocol = "any" }
    assert.equal(proto, copas.wrap(socket.tcp(), proto).ssl_params.wrap)
    local sni = { names = "name.copas.test", strict = true }
    local params = copas.wrap(socket.tcp(), { wrap = legacy, sni = sni }).ssl_params
    assert.equal(legacy, params.wrap)
    assert.equal(sni, params.sni)
    local ok_ssl, ssl = pcall(require, "ssl")
    if ok_ssl then
      local ctx = assert(ssl.newcontext { mode = "client", protocol = "any" })
      assert.equal(ctx, copas.wrap(socket.tcp(), ctx).ssl_params.wrap)
    end
    t:close()
  end)

  it("raises 'ssl parameters; did not expect type <type>' for other types", function()
    local ok, err = pcall(copas.wrap, socket.tcp(), 42)
    assert.is_false(ok)
    assert.matches("ssl parameters; did not expect type number", tostring(err), 1, true)
    ok, err = pcall(copas.wrap, socket.tcp(), "params")
    assert.is_false(ok)
    assert.matches("ssl parameters; did not expect type string", tostring(err), 1, true)
  end)
end)


describe("the TCP wrapper", function()
  before_each(fresh_copas)

  it("connect() returns 1 for a plain connection", function()
    local server, port = listen()
    local r
    run(function()
      local w = copas.wrap(socket.tcp())
      r = pack(w:connect("127.0.0.1", port))
      w:close()
    end)
    server:close()
    assert.same({ 1 }, r)
  end)

  it("connect() returns nil, 'connection refused' when nobody listens", function()
    local holder = socket.tcp()
    assert(holder:bind("127.0.0.1", 0))
    local _, port = holder:getsockname()
    local r
    run(function()
      r = pack(copas.wrap(socket.tcp()):connect("127.0.0.1", port))
    end)
    holder:close()
    assert.same({ nil, "connection refused" }, r)
  end)

  it("send() and receive() with '*l', '*a', a count and a prefix; receivepartial()", function()
    local a, b = pair()
    local wa, wb = copas.wrap(a), copas.wrap(b)
    local got = {}
    run(function()
      got.sent = pack(wa:send("line\n12345partial"))
      got.sent2 = pack(wa:send("xxabcxx", 3, 5))
      got.line = pack(wb:receive("*l"))
      got.default = nil
      got.count = pack(wb:receive(5))
      got.prefixed = pack(wb:receive(4, "<<"))       -- count includes the prefix
      got.partial = pack(wb:receivepartial("*l"))
      got.alias = wb.receivePartial == wb.receivepartial
      wa:send("\nrest")
      got.more = pack(wb:receive("*l"))
      wa:close()
      got.all = pack(wb:receive("*a"))
    end)
    b:close()
    assert.same({ 17 }, got.sent)
    assert.same({ 5 }, got.sent2)
    assert.same({ "line" }, got.line)
    assert.same({ "12345" }, got.count)
    assert.same({ "<<pa" }, got.prefixed)
    assert.same({ nil, "timeout", "rtialabc" }, got.partial)
    assert.is_true(got.alias)
    assert.same({ "" }, got.more)
    assert.same({ "rest" }, got.all)
  end)

  it("receive() behaves as receivepartial() while the receive timeout is 0", function()
    local a, b = pair()
    local wb = copas.wrap(b)
    local r
    run(function()
      assert(wb:settimeout(0))
      copas.addthread(function()
        copas.pause(0.05)
        copas.send(a, "no line end")
      end)
      r = pack(wb:receive("*l"))
    end)
    a:close() b:close()
    assert.same({ nil, "timeout", "no line end" }, r)
  end)

  it("settimeout() and settimeouts() limit the wrapper's operations", function()
    local a, b = pair()
    local wb = copas.wrap(b)
    local r1, r2, bad1, bad2
    run(function()
      assert.is_true(wb:settimeout(0.1))
      r1 = pack(wb:receive())
      assert.is_true(wb:settimeouts(nil, nil, 0.1))
      r2 = pack(wb:receive())
      bad1 = pack(wb:settimeout("x"))
      bad2 = pack(wb:settimeouts(nil, nil, "x"))
    end)
    a:close() b:close()
    assert.same({ nil, "timeout", "" }, r1)
    assert.same({ nil, "timeout", "" }, r2)
    assert.same({ nil, "timeout must be 'nil' or a number" }, bad1)
    assert.same({ nil, "read timeout must be 'nil' or a number" }, bad2)
  end)

  it("close() closes the socket", function()
    local a, b = pair()
    local wb = copas.wrap(b)
    assert.same({ 1 }, pack(wb:close()))
    assert.equal(-1, b:getfd())
    a:close()
  end)

  it("passes getsockname, getpeername, getstats, setstats, setoption, getoption through", function()
    local a, b = pair()
    local wa = copas.wrap(a)
    assert.same(pack(a:getsockname()), pack(wa:getsockname()))
    assert.same(pack(a:getpeername()), pack(wa:getpeername()))
    local r = wa:getstats()
    assert.is_number(r)
    assert.equal(1, wa:setstats(10, 20, 30))
    local rs, sn = wa:getstats()
    assert.same({ 10, 20 }, { rs, sn })
    assert.equal(1, wa:setoption("tcp-nodelay", true))
    assert.is_true(wa:getoption("tcp-nodelay"))
    assert.equal(1, wa:setoption("tcp-nodelay", false))
    assert.is_false(wa:getoption("tcp-nodelay"))
    a:close() b:close()
  end)

  it("passes getfd, setfd and dirty through", function()
    local a, b = pair()
    local wa = copas.wrap(a)
    assert.equal(a:getfd(), wa:getfd())
    assert.is_false(wa:dirty())
    a:close() b:close()
  end)

  it("shutdown('send') is passed through: the peer reads to the end", function()
    local a, b = pair()
    local wa = copas.wrap(a)
    local r
    run(function()
      copas.send(a, "bye")
      assert.equal(1, wa:shutdown("send"))
      r = pack(copas.receive(b, "*a"))
    end)
    a:close() b:close()
    assert.same({ "bye" }, r)
  end)

  it("flush() is a no-op returning nothing", function()
    local a, b = pair()
    assert.equal(0, select("#", copas.wrap(a):flush()))
    a:close() b:close()
  end)

  it("bind, listen and accept are passed through", function()
    local w = copas.wrap(socket.tcp())
    assert.equal(1, w:bind("127.0.0.1", 0))
    assert.equal(1, w:listen(4))
    local ip, port = w:getsockname()
    assert.equal("127.0.0.1", ip)
    assert.same({ nil, "timeout" }, pack(w:accept()))    -- non-blocking: nobody yet
    local c = assert(socket.connect("127.0.0.1", port))
    local accepted = w:accept()
    assert.equal("tcp{client}", accepted.class)
    accepted:close() c:close() w:close()
  end)

  it("getalpn() and getsniname() return nil, 'not a tls socket' on a plain socket", function()
    local a, b = pair()
    local wa = copas.wrap(a)
    assert.same({ nil, "not a tls socket" }, pack(wa:getalpn()))
    assert.same({ nil, "not a tls socket" }, pack(wa:getsniname()))
    a:close() b:close()
  end)
end)


describe("the TCP wrapper with TLS", function()
  local c
  setup(function()
    if certs.available() then c = certs.generate() end
  end)
  teardown(function() certs.cleanup(c) end)
  before_each(fresh_copas)

  -- a TLS server on 127.0.0.1; `serve(wrapped)` runs after the handshake
  local function tls_server(serve, extra)
    local server, port = listen()
    copas.addserver(server, copas.handler(serve, certs.server_params(c, "server", extra)))
    return server, port
  end

  it("connect() performs the handshake and returns the wrapper", function()
    if not c then pending("openssl not available") return end
    local server, port = tls_server(function(w) w:send("secure\n") end)
    local r, line, sock
    run(function()
      local w = copas.wrap(socket.tcp(), certs.client_params(c))
      r = pack(w:connect("127.0.0.1", port))
      sock = w.socket
      line = w:receive()
      assert.equal(w, r[1])
      w:close()
      copas.removeserver(server)
    end)
    assert.equal("secure", line)
    assert.is_function(sock.getpeercertificate)      -- .socket is the TLS socket now
  end)

  it("dohandshake() replaces .socket and returns the wrapper", function()
    if not c then pending("openssl not available") return end
    local server, port = tls_server(function(w) w:send("ok\n") end)
    local r, before, after, line
    run(function()
      local w = copas.wrap(socket.tcp())
      assert.same({ 1 }, pack(w:connect("127.0.0.1", port)))
      before = w.socket
      r = pack(w:dohandshake(certs.client_params(c)))
      after = w.socket
      line = w:receive()
      assert.equal(w, r[1])
      w:close()
      copas.removeserver(server)
    end)
    assert.not_equal(before, after)
    assert.is_function(after.getpeercertificate)
    assert.equal("ok", line)
  end)

  it("sni() wraps without a handshake and the server sees the name", function()
    if not c then pending("openssl not available") return end
    local seen
    local server, port = tls_server(function(w)
      seen = pack(w:getsniname())
      w:send("x\n")
    end)
    run(function()
      local w = copas.wrap(socket.tcp(), { wrap = certs.client_params(c) })
      assert(copas.connect(w.socket, "127.0.0.1", port))
      w:sni("sni.copas.test")
      assert.is_function(w.socket.getpeercertificate)   -- TLS now, not yet shaken
      assert(w:dohandshake())
      w:receive()
      w:close()
      copas.removeserver(server)
    end)
    assert.same({ "sni.copas.test" }, seen)
  end)

  it("getalpn() gives the negotiated protocol; getsockname() is not in LuaSec", function()
    if not c then pending("openssl not available") return end
    local server_alpn
    local server, port = tls_server(function(w)
      server_alpn = pack(w:getalpn())
      w:send("x\n")
    end, { alpn = { "copas/1" } })
    local alpn, sockname, peer
    run(function()
      local w = copas.wrap(socket.tcp(), certs.client_params(c, { alpn = "copas/1" }))
      assert(w:connect("127.0.0.1", port))
      alpn = pack(w:getalpn())
      sockname = pack(w:getsockname())
      peer = pack(w:getpeername())
      w:receive()
      w:close()
      copas.removeserver(server)
    end)
    assert.same({ "copas/1" }, alpn)
    assert.same({ "copas/1" }, server_alpn)
    local ssl = require "ssl"
    local probe = ssl.wrap(socket.tcp(), { mode = "client", protocol = "any" })
    if probe and probe.getsockname == nil then
      assert.same({ nil, "not implemented by LuaSec" }, sockname)
      assert.same({ nil, "not implemented by LuaSec" }, peer)
    else
      assert.equal("127.0.0.1", sockname[1])
    end
  end)
end)


describe("socket names", function()
  before_each(fresh_copas)

  it("default to tostring(socket); a wrapper names its underlying socket", function()
    local t = socket.tcp()
    assert.equal(tostring(t), copas.getsocketname(t))
    local w = copas.wrap(t)
    copas.setsocketname("named", w)
    assert.equal("named", copas.getsocketname(t))
    assert.equal("named", copas.getsocketname(w))
    t:close()
  end)

  it("raise for a missing socket", function()
    local ok, err = pcall(copas.setsocketname, "name", nil)
    assert.is_false(ok)
    assert.matches("expected arg #2 to be a socket", tostring(err), 1, true)
    ok, err = pcall(copas.getsocketname, nil)
    assert.is_false(ok)
    assert.matches("expected arg #1 to be a socket", tostring(err), 1, true)
  end)
end)


describe("copas.debug.socket()", function()
  before_each(fresh_copas)

  it("returns a proxy that prints each method call with arguments and results", function()
    local a, b = pair()
    local proxy = copas.debug.socket(a)
    local r
    local out = capture_print(function()
      run(function()
        r = pack(copas.send(proxy, "traced data\n"))
      end)
    end)
    local line = copas.receive(b)
    a:close() b:close()
    assert.same({ 12 }, r)
    assert.equal("traced data", line)
    local text = table.concat(out, "\n")
    assert.matches("send", text, 1, true)
    assert.matches("traced data", text, 1, true)
    assert.matches("12", text, 1, true)
  end)

  it("shortens long strings", function()
    local a, b = pair()
    local proxy = copas.debug.socket(a)
    local big = ("y"):rep(10000)
    local out = capture_print(function()
      run(function() copas.send(proxy, big) end)
    end)
    a:close() b:close()
    for _, l in ipairs(out) do
      assert.is_true(#l < 1000, "line of " .. #l .. " bytes")
    end
  end)

  it("given a wrapper, replaces its socket with a proxy and returns the wrapper", function()
    local a, b = pair()
    local w = copas.wrap(a)
    local out = capture_print(function()
      assert.equal(w, copas.debug.socket(w))
      run(function() w:send("via wrapper\n") end)
    end)
    assert.not_equal(a, w.socket)
    assert.equal("via wrapper", copas.receive(b))
    assert.matches("send", table.concat(out, "\n"), 1, true)
    a:close() b:close()
  end)
end)
