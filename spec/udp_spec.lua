-- UDP (API.md sections 5, 6 and 7): UDP servers, receive/receivefrom/
-- send/sendto on raw sockets, the UDP wrapper, timeouts and truncation.
local helpers = require "spec.helpers"
local socket = require "socket"

local copas
local errors

local function fresh_copas()
  copas, errors = helpers.reload_strict()
end

local function run(fn, timeout)
  helpers.run_strict(errors, fn, timeout)
end

local has_ipv6 = (function()
  local s = socket.udp6 and socket.udp6()
  if s and s:setsockname("::1", 0) then s:close() return true end
  return false
end)()

-- a UDP socket bound to host (default 127.0.0.1) port 0, and its port
local function bound(host)
  host = host or "127.0.0.1"
  local u = host:find(":") and socket.udp6() or socket.udp()
  assert(u:setsockname(host, 0))
  local _, port = u:getsockname()
  u:settimeout(0)
  return u, tonumber(port)
end

local function pack(...) return { ... } end


describe("copas.addserver() with a UDP socket", function()
  before_each(fresh_copas)

  it("runs the handler inside addserver until its first suspension", function()
    local server = bound()
    local steps = {}
    copas.addserver(server, function(skt)
      steps[#steps + 1] = "started"
      steps.skt = skt
      steps.name = copas.getthreadname()
      copas.receivefrom(skt)                       -- suspends here
      steps[#steps + 1] = "received"
    end, nil, "udpserver")
    assert.same({ "started" }, { steps[1], steps[2] })
    assert.equal(server, steps.skt)                -- the raw socket
    assert.equal("udpserver:handler", steps.name)
    copas.removeall()
    server:close()
  end)

  it("names the handler after the socket when no name is given", function()
    local server = bound()
    local name
    copas.addserver(server, function() name = copas.getthreadname() end)
    assert.equal(tostring(server) .. ":handler", name)
    server:close()
  end)

  it("serves datagrams: receivefrom gives data, ip and port; sendto answers", function()
    local server, port = bound()
    local seen
    copas.addserver(server, function(skt)
      local data, ip, from = copas.receivefrom(skt)
      seen = { data, ip, from }
      skt:sendto(data:upper(), ip, from)
    end)
    local reply
    local client, cport = bound()
    run(function()
      assert(client:sendto("ping", "127.0.0.1", port))
      reply = pack(copas.receivefrom(client))
    end)
    client:close() server:close()
    assert.same({ "ping", "127.0.0.1", cport }, seen)
    assert.same({ "PING", "127.0.0.1", port }, reply)
  end)
end)


for _, host in ipairs { "127.0.0.1", "::1" } do
  describe("UDP socket functions over " .. host, function()
    before_each(fresh_copas)

    it("copas.receive(skt, size) waits for a datagram on a connected socket", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      local a, aport = bound(host)
      local b, bport = bound(host)
      assert(a:setpeername(host, bport))
      assert(b:setpeername(host, aport))
      local got
      run(function()
        copas.addthread(function()
          copas.pause(0.05)
          copas.send(a, "hello")
        end)
        got = pack(copas.receive(b, 100))
      end)
      a:close() b:close()
      assert.same({ "hello" }, got)
    end)

    it("copas.send() sends the whole string as one datagram, ignoring i and j", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      local a, aport = bound(host)
      local b, bport = bound(host)
      assert(a:setpeername(host, bport))
      assert(b:setpeername(host, aport))
      local sent, got
      run(function()
        sent = pack(copas.send(a, "abcdef", 2, 3))
        got = pack(copas.receive(b, 100))
      end)
      a:close() b:close()
      assert.same({ 6 }, sent)
      assert.same({ "abcdef" }, got)
    end)

    it("copas.sendto() sends directly and copas.receivefrom() reports the sender", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      local a, aport = bound(host)
      local b, bport = bound(host)
      local sent, got
      run(function()
        sent = pack(copas.sendto(a, "to b", host, bport))
        got = pack(copas.receivefrom(b))
      end)
      a:close() b:close()
      assert.same({ 4 }, sent)
      assert.same({ "to b", host, aport }, got)
    end)
  end)
end


describe("UDP datagrams", function()
  before_each(fresh_copas)

  it("are truncated to the receive size, the rest discarded (as LuaSocket)", function()
    local a = bound()
    local b, bport = bound()
    local big = ("0123456789"):rep(300)                -- 3000 bytes
    local first, second
    run(function()
      assert(a:sendto(big, "127.0.0.1", bport))
      assert(a:sendto("second", "127.0.0.1", bport))
      first = pack(copas.receivefrom(b, 100))
      second = pack(copas.receivefrom(b, 100))
    end)
    a:close() b:close()
    assert.equal(big:sub(1, 100), first[1])
    assert.equal("second", second[1])
  end)

  it("receivefrom() without a size takes a full-size datagram", function()
    local a = bound()
    local b, bport = bound()
    local size = socket._DATAGRAMSIZE or 8192
    local data = ("d"):rep(size)
    local got
    run(function()
      assert(a:sendto(data, "127.0.0.1", bport))
      got = pack(copas.receivefrom(b))
    end)
    a:close() b:close()
    assert.equal(size, #got[1])
  end)

  it("time out with nil, 'timeout' and keep the socket usable", function()
    local a = bound()
    local b, bport = bound()
    copas.settimeout(b, 0.2)
    local r1, r2, elapsed
    run(function()
      local t0 = copas.gettime()
      r1 = pack(copas.receivefrom(b))
      elapsed = copas.gettime() - t0
      assert(a:sendto("after", "127.0.0.1", bport))
      r2 = pack(copas.receivefrom(b))
    end)
    a:close() b:close()
    assert.same({ nil, "timeout" }, r1)
    assert.is_true(elapsed >= 0.2)
    assert.equal("after", r2[1])
  end)

  it("a thread waiting in receivefrom() gets nil, 'closed' when the socket is closed", function()
    local a = bound()
    local b, bport = bound()
    local r1, r2, r3
    run(function()
      copas.addthread(function()
        r1 = pack(copas.receivefrom(b))
        -- the closer first runs in a later round, while this thread waits
        copas.addthread(function() copas.close(b) end)
        r2 = pack(copas.receivefrom(b))
        r3 = pack(copas.receive(b, 10))     -- already closed
      end)
      assert(a:sendto("x", "127.0.0.1", bport))
    end)
    a:close()
    assert.equal("x", r1[1])
    assert.same({ nil, "closed" }, r2)
    assert.same({ nil, "closed" }, r3)
  end)

  it("copas.receivefrom() and copas.receive() refuse a negative size", function()
    local b = bound()
    local r1, r2
    run(function()
      r1 = pack(pcall(copas.receivefrom, b, -1))
      r2 = pack(pcall(copas.receive, b, -1))
    end)
    b:close()
    assert.is_false(r1[1], "receivefrom(-1) returned " .. tostring(r1[2]) .. ", " .. tostring(r1[3]))
    assert.matches("receivefrom", tostring(r1[2]), 1, true)
    assert.is_false(r2[1], "receive(-1) returned " .. tostring(r2[2]) .. ", " .. tostring(r2[3]))
    assert.matches("receive", tostring(r2[2]), 1, true)
  end)

  it("copas.receive() on a UDP socket refuses a string pattern", function()
    local b = bound()
    local ok, err
    run(function() ok, err = pcall(copas.receive, b, "*l") end)
    b:close()
    assert.is_false(ok)
    assert.matches("receive", tostring(err), 1, true)
  end)
end)


describe("the UDP wrapper", function()
  before_each(fresh_copas)

  it("is made for UDP sockets and prints as the socket plus ' (copas wrapped)'", function()
    local u = socket.udp()
    local w = copas.wrap(u)
    assert.equal(u, w.socket)
    assert.equal(tostring(u) .. " (copas wrapped)", tostring(w))
    assert.equal(w, copas.wrap(w))
    u:close()
  end)

  it("passes setsockname and setpeername through and sends, receives with them", function()
    local wa = copas.wrap(socket.udp())
    local wb = copas.wrap(socket.udp())
    assert(wa:setsockname("127.0.0.1", 0))
    assert(wb:setsockname("127.0.0.1", 0))
    local _, aport = wa.socket:getsockname()
    local _, bport = wb.socket:getsockname()
    assert(wa:setpeername("127.0.0.1", bport))
    local sent, sent2, got, got2
    run(function()
      sent = pack(wa:send("via send"))
      got = pack(wb:receive())
      sent2 = pack(wb:sendto("via sendto", "127.0.0.1", aport))
      got2 = pack(wa:receive(5))
    end)
    wa.socket:close() wb.socket:close()
    assert.same({ 8 }, sent)
    assert.same({ "via send" }, got)
    assert.same({ 10 }, sent2)
    assert.same({ "via s" }, got2)
  end)

  it("receivefrom(size) waits and returns data, ip and port", function()
    local a, aport = bound()
    local w = copas.wrap(socket.udp())
    assert(w:setsockname("127.0.0.1", 0))
    local _, wport = w.socket:getsockname()
    local got
    run(function()
      copas.addthread(function()
        copas.pause(0.05)
        a:sendto("late datagram", "127.0.0.1", wport)
      end)
      got = pack(w:receivefrom(4))
    end)
    a:close() w.socket:close()
    assert.same({ "late", "127.0.0.1", aport }, got)
  end)

  it("settimeout and settimeouts limit receive", function()
    local w = copas.wrap(socket.udp())
    assert(w:setsockname("127.0.0.1", 0))
    local r1, r2
    run(function()
      assert(w:settimeout(0.1))
      r1 = pack(w:receive())
      assert(w:settimeouts(nil, nil, 0.1))
      r2 = pack(w:receivefrom())
    end)
    w.socket:close()
    assert.same({ nil, "timeout" }, r1)
    assert.same({ nil, "timeout" }, r2)
  end)

  it("close() returns true and leaves the socket open", function()
    local a = bound()
    local w = copas.wrap(socket.udp())
    assert(w:setsockname("127.0.0.1", 0))
    local _, wport = w.socket:getsockname()
    assert.is_true(w:close())
    local got
    run(function()
      assert(a:sendto("still open", "127.0.0.1", wport))
      got = pack(w:receive())
    end)
    assert.same({ "still open" }, got)
    assert.equal(1, w.socket:close())               -- closing for real
    a:close()
  end)

  it("close() does not close the socket a UDP server uses", function()
    local server, port = bound()
    local got = {}
    copas.addserver(server, function(skt)
      for _ = 1, 2 do got[#got + 1] = copas.receivefrom(skt) end
    end)
    local w = copas.wrap(server)
    local client = bound()
    run(function()
      client:sendto("one", "127.0.0.1", port)
      while #got < 1 do copas.pause(0.01) end
      assert(w:close())
      client:sendto("two", "127.0.0.1", port)
    end)
    client:close() server:close()
    assert.same({ "one", "two" }, got)
  end)
end)
