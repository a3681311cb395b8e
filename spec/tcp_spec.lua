-- copas socket functions on raw TCP sockets (API.md sections 6 and 8):
-- connect, send, receive, receivepartial, flush, data delivery (buffered
-- data, trickling peers, slow readers, large transfers), half-close, peer
-- reset and argument errors.
local helpers = require "spec.helpers"
local socket = require "socket"

local copas
local errors      -- messages of threads that died (collected by the handler)

local function fresh_copas()
  copas, errors = helpers.reload_strict()
end

-- runs `fn` as a thread until the loop ends; fails on any thread error
local function run(fn, timeout)
  helpers.run_strict(errors, fn, timeout)
end

local has_ipv6 = (function()
  local s = socket.bind("::1", 0)
  if s then s:close() return true end
  return false
end)()

-- a listening socket on `host` (default 127.0.0.1), port 0 read back
local listen = helpers.listen

-- two connected raw TCP sockets, both with LuaSocket timeout 0
local pair = helpers.pair

-- the results as a table; trailing nils do not count (LuaSocket itself
-- returns data, nil, nil on success)
local function pack(...) return { ... } end

for _, host in ipairs { "127.0.0.1", "::1" } do

  describe("copas.connect() to " .. host, function()
    before_each(fresh_copas)

    it("connects without blocking and returns 1", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      local server, port = listen(host)
      copas.addserver(server, function(c) copas.send(c, "hello\n") end)
      local res, line
      run(function()
        local skt = socket.tcp()
        res = pack(copas.connect(skt, host, port))
        line = copas.receive(skt)
        skt:close()
        copas.removeserver(server)
      end)
      assert.same({ 1 }, res)
      assert.equal("hello", line)
    end)

    it("returns nil, 'connection refused' when nobody listens", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      -- bound but not listening: the port stays ours and refuses connections
      local holder = socket.tcp()
      assert(holder:bind(host, 0))
      local _, port = holder:getsockname()
      local res
      run(function()
        res = pack(copas.connect(socket.tcp(), host, port))
      end)
      holder:close()
      assert.same({ nil, "connection refused" }, res)
    end)

    it("returns nil, 'already connected' for a connected socket", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      local server, port = listen(host)
      local first, second
      run(function()
        local skt = socket.tcp()
        first = pack(copas.connect(skt, host, port))
        second = pack(copas.connect(skt, host, port))
        skt:close()
      end)
      server:close()
      assert.same({ 1 }, first)
      assert.same({ nil, "already connected" }, second)
    end)
  end)

  describe("copas.send() and copas.receive() over " .. host, function()
    before_each(fresh_copas)

    it("send returns the index of the last byte sent, honouring i and j", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      local a, b = pair(host)
      local r1, r2, got
      run(function()
        r1 = pack(copas.send(a, "abcdef"))
        r2 = pack(copas.send(a, "0123456789", 3, 5))
        got = copas.receive(b, 9)
      end)
      a:close() b:close()
      assert.same({ 6 }, r1)
      assert.same({ 5 }, r2)
      assert.equal("abcdef234", got)
    end)

    it("receives lines (CR LF stripped), counts, '*a' and a prefix", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      local a, b = pair(host)
      local got = {}
      run(function()
        copas.send(a, "one\r\ntwo\nthree\n12345xyz")
        got[1] = copas.receive(b)                 -- default pattern "*l"
        got[2] = copas.receive(b, "*l")
        got[3] = copas.receive(b, "*l", "pre-")
        got[4] = copas.receive(b, 3)
        got[5] = copas.receive(b, 3, ">")        -- the count includes the prefix
        a:close()
        got[6] = copas.receive(b, "*a")
      end)
      b:close()
      assert.same({ "one", "two", "pre-three", "123", ">45", "xyz" }, got)
    end)

    it("accepts the LuaSocket 3 spellings 'l' and 'a'", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      local a, b = pair(host)
      local got = {}
      run(function()
        copas.send(a, "line\nrest")
        got[1] = copas.receive(b, "l")
        a:close()
        got[2] = copas.receive(b, "a")
      end)
      b:close()
      assert.same({ "line", "rest" }, got)
    end)

    it("'*a' returns everything up to the peer's close", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      local a, b = pair(host)
      local res
      run(function()
        copas.addthread(function()
          copas.send(a, "first part, ")
          copas.pause(0)
          copas.send(a, "second part")
          a:close()
        end)
        res = pack(copas.receive(b, "*a"))
      end)
      b:close()
      -- all of it arrives, either as the result or as the partial of a
      -- call that met the close after the data (API.md section 6)
      local data = res[1] or res[3]
      assert.equal("first part, second part", data)
      if res[1] == nil then assert.equal("closed", res[2]) end
    end)

    it("returns nil, 'closed' and the partial line when the peer closes", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      local a, b = pair(host)
      local res, res2
      run(function()
        copas.addthread(function()
          copas.send(a, "tail")
          a:close()
        end)
        res = pack(copas.receive(b, "*l"))
        res2 = pack(copas.receive(b, 10))
      end)
      b:close()
      assert.same({ nil, "closed", "tail" }, res)
      assert.same({ nil, "closed", "" }, res2)
    end)

    it("waits for data that arrives later", function()
      if host == "::1" and not has_ipv6 then pending("no IPv6 loopback") return end
      local a, b = pair(host)
      local line, sent_at, got_at
      run(function()
        copas.addthread(function()
          copas.pause(0.1)
          sent_at = copas.gettime()
          copas.send(a, "late\n")
        end)
        line = copas.receive(b)
        got_at = copas.gettime()
      end)
      a:close() b:close()
      assert.equal("late", line)
      assert.is_true(got_at >= sent_at)
    end)
  end)
end


describe("copas.receivepartial()", function()
  before_each(fresh_copas)

  it("is also available as copas.receivePartial", function()
    assert.is_function(copas.receivepartial)
    assert.equal(copas.receivepartial, copas.receivePartial)
  end)

  it("returns the full result when the pattern is satisfied", function()
    local a, b = pair()
    local res
    run(function()
      copas.send(a, "whole line\n")
      res = pack(copas.receivepartial(b, "*l"))
    end)
    a:close() b:close()
    assert.same({ "whole line" }, res)
  end)

  it("returns nil, 'timeout' and what arrived when the pattern is not yet satisfied", function()
    local a, b = pair()
    local res, res2
    run(function()
      copas.addthread(function()
        copas.pause(0.05)
        copas.send(a, "par")
      end)
      res = pack(copas.receivepartial(b, "*l"))        -- waits for the first byte
      copas.send(a, "tial\n")
      res2 = pack(copas.receivepartial(b, "*l", res[3]))
    end)
    a:close() b:close()
    assert.same({ nil, "timeout", "par" }, res)
    assert.same({ "partial" }, res2)
  end)

  it("works with a byte count and a prefix", function()
    local a, b = pair()
    local res
    run(function()
      copas.send(a, "ab")
      res = pack(copas.receivepartial(b, 5, ">"))
    end)
    a:close() b:close()
    assert.same({ nil, "timeout", ">ab" }, res)
  end)
end)


describe("copas.flush()", function()
  before_each(fresh_copas)

  it("is a no-op that returns nothing", function()
    local a, b = pair()
    assert.equal(0, select("#", copas.flush(a)))
    a:close() b:close()
  end)
end)


describe("data delivery", function()
  before_each(fresh_copas)

  it("serves two lines that arrived in one packet without waiting for the kernel again", function()
    local a, b = pair()
    -- with a receive timeout and a peer that sends nothing more, a second
    -- receive that waited on the kernel would time out instead of returning
    copas.settimeout(b, 1)
    local got, elapsed = {}, nil
    run(function()
      copas.send(a, "one\ntwo\n")
      got[1] = pack(copas.receive(b, "*l"))
      local t0 = copas.gettime()
      got[2] = pack(copas.receive(b, "*l"))
      elapsed = copas.gettime() - t0
    end)
    a:close() b:close()
    assert.same({ "one" }, got[1])
    assert.same({ "two" }, got[2])
    assert.is_true(elapsed < 0.5, "second receive took " .. elapsed .. " s")
  end)

  it("lets other threads run while a reader never has to wait (API 1.5)", function()
    -- 20 000 one-byte receives from a socket whose data is all there:
    -- none of them waits, and still the reader yields now and then, so a
    -- thread looping on pause(0) keeps running. Counted in operations, not
    -- time: the reader yields once per 64 (asserted: at least per 100).
    local a, b = pair()
    local n = 20000
    a:send(("x"):rep(n))
    local reads, other, done = 0, 0, false
    run(function()
      copas.addthread(function()
        while not done do other = other + 1; copas.pause(0) end
      end)
      for _ = 1, n do
        assert(copas.receive(b, 1) == "x")
        reads = reads + 1
      end
      done = true
    end)
    a:close() b:close()
    assert.equal(n, reads)
    assert.is_true(other >= n / 100, ("the other thread ran %d times during %d reads"):format(other, n))
  end)

  it("assembles a line from a peer sending one byte at a time", function()
    local a, b = pair()
    local msg = "hello, byte by byte\n"
    local line, counted
    run(function()
      copas.addthread(function()
        for i = 1, #msg * 2 do
          local k = (i - 1) % #msg + 1
          assert(copas.send(a, msg:sub(k, k)) == 1)
          copas.pause(0)
        end
      end)
      line = copas.receive(b, "*l")
      counted = copas.receive(b, #msg)
    end)
    a:close() b:close()
    assert.equal("hello, byte by byte", line)
    assert.equal(msg, counted)
  end)

  it("delivers everything to a slow receiver (the sender waits for room)", function()
    local a, b = pair()
    local parts = {}
    for i = 1, 40000 do parts[i] = ("%07d\n"):format(i) end
    local data = table.concat(parts)            -- 320 000 bytes
    local sent, received = nil, {}
    run(function()
      copas.addthread(function()
        sent = pack(copas.send(a, data))
        a:close()
      end)
      local rounds = 0
      while rounds < 100000 do
        rounds = rounds + 1
        local chunk, err, partial = copas.receive(b, 4000)
        chunk = chunk or partial
        if chunk and #chunk > 0 then received[#received + 1] = chunk end
        if err == "closed" then break end
        assert(err == nil, err)
        copas.pause(0)                          -- read slowly: one chunk per round
      end
    end, 30)
    b:close()
    assert.same({ #data }, sent)
    assert.equal(#data, #table.concat(received))
    assert.is_true(table.concat(received) == data, "data differs")
  end)
end)


describe("large transfers", function()
  before_each(fresh_copas)

  -- Every connection sends SIZE bytes each way at once. Chunks are made from
  -- the connection and chunk numbers, so the receiver compares each chunk
  -- with the one expected (stronger than a checksum, and as fast).
  local CONNS, CHUNK, SIZE = 10, 64 * 1024, 20 * 1024 * 1024
  local NCHUNKS = SIZE / CHUNK
  local base do
    local t = {}
    local x = 12345
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

  it(("moves %d MB each way on %d connections at once, intact"):format(SIZE / 2^20, CONNS), function()
    local server, port = listen()
    local done, bad = 0, {}
    local function pump(skt, out_dir, in_dir, conn)
      -- one thread sends while the calling one receives
      local sender_done = false
      copas.addthread(function()
        for i = 1, NCHUNKS do
          local last, err = copas.send(skt, chunk(out_dir, conn, i))
          if last ~= CHUNK then bad[#bad + 1] = "send: " .. tostring(err) break end
        end
        sender_done = true
      end)
      for i = 1, NCHUNKS do
        local data, err = copas.receive(skt, CHUNK)
        if data ~= chunk(in_dir, conn, i) then
          bad[#bad + 1] = ("conn %d chunk %d: %s"):format(conn, i, tostring(err or "differs"))
          break
        end
      end
      while not sender_done do copas.pause(0.01) end
      done = done + 1
    end
    copas.addserver(server, function(c)
      local conn = tonumber(copas.receive(c, "*l"))
      pump(c, "S", "C", conn)
    end)
    run(function()
      for conn = 1, CONNS do
        copas.addthread(function()
          local skt = socket.tcp()
          assert(copas.connect(skt, "127.0.0.1", port))
          copas.send(skt, conn .. "\n")
          pump(skt, "C", "S", conn)
          skt:close()
        end)
      end
      while done < 2 * CONNS and #bad == 0 do copas.pause(0.05) end
      copas.removeserver(server)
    end, 120)
    assert.same({}, bad)
    assert.equal(2 * CONNS, done)
  end)
end)


describe("half-close", function()
  before_each(fresh_copas)

  it("lets the peer read everything with '*a' after shutdown('send') and still answer", function()
    local server, port = listen()
    local server_got, client_got
    copas.addserver(server, function(c)
      server_got = copas.receive(c, "*a")
      copas.send(c, "got " .. #server_got .. " bytes")
      c:close()
    end)
    run(function()
      local skt = socket.tcp()
      assert(copas.connect(skt, "127.0.0.1", port))
      copas.send(skt, "request body\nwith two lines")
      assert(skt:shutdown("send"))
      client_got = copas.receive(skt, "*a")
      skt:close()
      copas.removeserver(server)
    end)
    assert.equal("request body\nwith two lines", server_got)
    assert.equal("got 27 bytes", client_got)
  end)
end)


describe("peer reset", function()
  before_each(fresh_copas)

  it("makes a waiting receive return nil, 'closed' and a later send nil, 'closed', 0", function()
    local a, b = pair()
    local recv, sent
    run(function()
      copas.addthread(function()
        copas.pause(0)
        assert(a:setoption("linger", { on = true, timeout = 0 }))
        a:close()                              -- sends RST
      end)
      recv = pack(copas.receive(b, "*l"))
      sent = pack(copas.send(b, "after the reset"))
    end)
    b:close()
    assert.same({ nil, "closed", "" }, recv)
    assert.same({ nil, "closed", 0 }, sent)
  end)
end)


describe("argument errors", function()
  before_each(fresh_copas)

  -- runs fn inside a thread and returns the error it raised
  local function error_of(fn)
    local ok, err
    run(function() ok, err = pcall(fn) end)
    assert.is_false(ok, "no error raised")
    return tostring(err)
  end

  it("receive() refuses a non-socket", function()
    local err = error_of(function() copas.receive("not a socket") end)
    assert.matches("receive", err, 1, true)
  end)

  it("receive() refuses an unknown pattern", function()
    local a, b = pair()
    local err = error_of(function() copas.receive(b, "*x") end)
    a:close() b:close()
    assert.matches("receive", err, 1, true)
    assert.matches("pattern", err, 1, true)
  end)

  it("receive() refuses a negative size", function()
    local a, b = pair()
    local err = error_of(function() copas.receive(b, -1) end)
    a:close() b:close()
    assert.matches("receive", err, 1, true)
  end)

  it("receivepartial() refuses an unknown pattern", function()
    local a, b = pair()
    local err = error_of(function() copas.receivepartial(b, "*x") end)
    a:close() b:close()
    assert.matches("receivepartial", err, 1, true)
  end)

  it("send() refuses a non-socket", function()
    local err = error_of(function() copas.send(42, "data") end)
    assert.matches("send", err, 1, true)
  end)

  it("connect() refuses a non-socket", function()
    local err = error_of(function() copas.connect(nil, "127.0.0.1", 1) end)
    assert.matches("connect", err, 1, true)
  end)

  it("addserver() refuses a non-number timeout", function()
    local server = listen()
    local ok, err = pcall(copas.addserver, server, function() end, "soon")
    server:close()
    assert.is_false(ok)
    assert.matches("addserver", tostring(err), 1, true)
  end)

  it("wrap() refuses a non-socket", function()
    local ok, err = pcall(copas.wrap, 42)
    assert.is_false(ok)
    assert.matches("wrap", tostring(err), 1, true)
  end)

  it("settimeout() returns an error for a non-number timeout (no raise)", function()
    local a, b = pair()
    assert.same({ nil, "timeout must be 'nil' or a number" }, { copas.settimeout(b, "1") })
    a:close() b:close()
  end)
end)


-- On Lua 5.3 and 5.4, receive and send run in the core (csrc/bind_io.c)
-- once a socket is marked non-blocking, and hand anything else to the Lua
-- functions; these specs reach the paths between the two.
describe("receive() and send() on a socket copas already knows", function()
  before_each(fresh_copas)

  it("report argument errors at the caller's line", function()
    local a, b = pair()
    local lines, errs = {}, {}
    run(function()
      copas.send(b, "x\n")                -- b is now marked non-blocking
      assert.equal("x", copas.receive(a))
      local cases = {
        function() copas.receive(b, "*x") end,
        function() copas.receive(b, -1) end,
        function() copas.send(b, {}) end,
        function() copas.send(b, "x", "1") end,
      }
      for i, case in ipairs(cases) do
        lines[i] = debug.getinfo(case, "S").linedefined
        local ok, err = pcall(case)
        assert.is_false(ok)
        errs[i] = tostring(err)
      end
    end)
    a:close() b:close()
    for i, err in ipairs(errs) do
      assert.matches("tcp_spec.lua:" .. lines[i] .. ": bad argument", err, 1, true)
    end
  end)

  it("call socket methods that yield, and return what they return", function()
    local a, b = pair()
    -- an object around a LuaSocket socket whose receive and send pause a
    -- round first: the core's calls into them are suspended and resumed
    local calls = { receive = 0, send = 0 }
    local obj = {}
    function obj.settimeout(_, t) return b:settimeout(t) end
    function obj.receive(_, ...) calls.receive = calls.receive + 1 copas.pause(0) return b:receive(...) end
    function obj.send(_, ...) calls.send = calls.send + 1 copas.pause(0) return b:send(...) end
    function obj.getfd() return b:getfd() end
    function obj.dirty() return b:dirty() end
    local got, sent = {}, nil
    run(function()
      copas.addthread(function()
        sent = copas.receive(a, 13)
        copas.send(a, "four\nfive\n")
        copas.pause(0.05)
        copas.send(a, "sixseven")
        a:close()
      end)
      assert.equal(3, copas.send(obj, "one"))         -- marks obj (the Lua path)
      assert.equal(9, copas.send(obj, "two\nthree\n", 1, 9))
      assert.equal(2, copas.send(obj, "x\n", 2))
      got[1] = copas.receive(obj)
      got[2] = copas.receive(obj, "*l")
      got[3] = copas.receive(obj, 3)                  -- has to wait
      got[4] = { copas.receive(obj) }
    end)
    b:close()
    assert.equal("onetwo\nthree\n", sent)
    assert.same({ "four", "five", "six", { nil, "closed", "seven" } }, got)
    assert.equal(3, calls.send)
    assert.is_true(calls.receive >= 5)
  end)

  it("return lines already in the socket's buffer without waiting for more", function()
    local a, b = pair()
    local got = {}
    run(function()
      copas.addthread(function()
        copas.pause(0.02)                             -- the reader waits first
        copas.send(a, "one\ntwo\nthree\n")          -- then all in one segment
      end)
      for i = 1, 3 do got[i] = copas.receive(b) end  -- nothing follows them
    end, 2)
    a:close() b:close()
    assert.same({ "one", "two", "three" }, got)
  end)

  it("return the receive timeout from the core's last attempt", function()
    local a, b = pair()
    local res
    run(function()
      copas.send(b, "x\n")
      assert.equal("x", copas.receive(a))
      copas.settimeout(a, 0.05)
      copas.send(b, "partial")
      res = { copas.receive(a) }
    end)
    a:close() b:close()
    assert.same({ nil, "timeout", "partial" }, res)
  end)
end)
