-- Smoke tests of examples/*.lua. Each example runs as a child process on the
-- interpreter running the specs (spec/process.lua), bounded by its own
-- arguments, or is loaded as a module (http_server.lua); real clients in
-- this process check what the example claims to show. Run from the
-- repository root.
local helpers = require "spec.helpers"
local process = require "spec.process"
local certs = require "spec.certs"
local socket = require "socket"

local lua = process.lua()

local function example(name, args)
  return ("%s examples/%s.lua %s"):format(lua, name, args or "")
end

-- runs an example to its end: output, exit code
local function run_example(name, args)
  return process.spawn(example(name, args)):finish()
end

local function count(text, pattern)
  local n = 0
  for _ in text:gmatch(pattern) do n = n + 1 end
  return n
end

-- inside a Copas thread: pauses until pred() is true; raises `msg` after
-- `timeout` seconds
local function wait_for(copas, pred, timeout, msg)
  local deadline = copas.gettime() + timeout
  while not pred() do
    if copas.gettime() > deadline then error(msg .. " (after " .. timeout .. " s)", 2) end
    copas.pause(0.02)
  end
end

-- a Copas-wrapped TCP client connected to 127.0.0.1:port
local function connect(copas, port)
  local c = copas.wrap(socket.tcp())
  c:settimeout(5)
  assert(c:connect("127.0.0.1", port))
  return c
end


describe("examples/timers.lua", function()
  it("ticks each thread at its rate and ends by itself", function()
    local out, code = run_example("timers")
    assert.equal(0, code)
    assert.equal(10, count(out, "fast%s+tick %d+/10\n"))
    assert.equal(4, count(out, "medium%s+tick %d+/4\n"))
    assert.equal(2, count(out, "slow%s+tick %d+/2\n"))
    assert.matches("all threads done after", out, 1, true)
  end)
end)


describe("examples/timers_queues.lua", function()
  it("has every produced job taken in order and finished once, by both workers", function()
    local out, code = run_example("timers_queues", "6")
    assert.equal(0, code)
    local started, finished, workers = {}, {}, {}
    for w, job in out:gmatch("worker (%d) starts job (%d+)") do
      started[#started + 1] = tonumber(job)
      workers[w] = true
    end
    for job in out:gmatch("finished job (%d+)") do
      finished[tonumber(job)] = (finished[tonumber(job)] or 0) + 1
    end
    assert.same({ 1, 2, 3, 4, 5, 6 }, started)                  -- FIFO
    assert.same({ 1, 1, 1, 1, 1, 1 }, finished)
    assert.same({ ["1"] = true, ["2"] = true }, workers)
    assert.matches("queue finished: yes; 6 of 6 jobs done", out, 1, true)
  end)
end)


describe("examples/worker_job.lua", function()
  it("keeps the loop ticking while the job runs on a worker", function()
    -- the job has to last several ticks: LuaJIT sieves a million in a few ms
    local n, primes = 1000000, 78498
    if rawget(_G, "jit") then n, primes = 5000000, 348513 end
    local out, code = run_example("worker_job", "--tick 0.01 " .. n)
    assert.equal(0, code)
    local ticks = out:match(("^.*\n%d primes below %d in [%%d.]+ s; (%%d+) ticks meanwhile$"):format(primes, n))
    assert(ticks, out)
    assert.is_true(tonumber(ticks) >= 1, out)
  end)

  it("shows no tick while the same job blocks the loop (--inline)", function()
    local out, code = run_example("worker_job", "--inline --tick 0.01 200000")
    assert.equal(0, code)
    assert.matches("^17984 primes below 200000 in [%d.]+ s; 0 ticks meanwhile$", out)
  end)
end)


describe("examples/udp_echo.lua", function()
  it("gets every datagram echoed back", function()
    local out, code = run_example("udp_echo", "--count 5")
    assert.equal(0, code)
    for i = 1, 5 do
      local msg = ("datagram %d of 5"):format(i)
      assert.matches(('sent "%s", got "%s"'):format(msg, msg), out, 1, true)
    end
    assert.matches("\n5/5 echoed$", out)
  end)
end)


describe("examples/resolve_many.lua", function()
  it("resolves every name while the echo server keeps answering", function()
    local out, code = run_example("resolve_many", "20 127.0.0.1")
    assert.equal(0, code)
    assert.matches("20 lookups in [%d.]+ s: 20 resolved, 0 failed", out)
    assert.matches("%d+ echo round trips meanwhile", out)
  end)
end)


describe("examples/worker_fetch.lua", function()
  it("fetches every page of its own server on worker threads", function()
    local out, code = run_example("worker_fetch")
    assert.equal(0, code)
    assert.equal(8, count(out, "/p+: 200, text/plain, %d+ bytes, %d+ words"))
  end)
end)


describe("examples/chat.lua", function()
  it("passes a line to the other client, not back to the sender, and announces a leaver", function()
    local p = process.spawn(example("chat", "--duration 30"))
    local port = tonumber(p:line("^listening on 127%.0%.0%.1:(%d+)$"))
    local copas, errors = helpers.reload_strict()
    local got = {}
    helpers.run_strict(errors, function()
      local a = connect(copas, port)
      got.a_welcome = a:receive()
      local b = connect(copas, port)
      got.b_welcome = b:receive()
      got.a_join = a:receive()
      a:send("hello there\n")
      got.b_line = b:receive()
      a:send("/quit\n")
      got.b_leave = b:receive()
      got.a_after = { a:receive() }        -- its own line never comes back
      a:close()
      b:close()
    end, 15)
    p:kill()
    local out = p:finish()
    assert.same({
      a_welcome = "welcome, you are guest1",
      b_welcome = "welcome, you are guest2",
      a_join = "* guest2 joined",
      b_line = "guest1: hello there",
      b_leave = "* guest1 left",
      a_after = { nil, "closed", "" },
    }, got)
    assert.matches("guest1 joined\nguest2 joined\nguest1 left", out, 1, true)
  end)
end)


describe("examples/http_server.lua", function()
  local copas, errors, http_server

  before_each(function()
    copas, errors = helpers.reload_strict()
    http_server = dofile("examples/http_server.lua")
  end)

  after_each(function()
    assert(#errors == 0, "thread failed: " .. tostring(errors[1]))
  end)

  -- sends `text`, reads one response: status line, headers, body
  local function request(c, text)
    assert(c:send(text))
    local status, err = c:receive("*l")
    if not status then return nil, err end
    local headers = {}
    while true do
      local line = assert(c:receive("*l"))
      if line == "" then break end
      local k, v = line:match("^([^:]+):%s*(.*)$")
      headers[k:lower()] = v
    end
    local body, n = "", tonumber(headers["content-length"])
    if n and n > 0 and not text:match("^HEAD") then body = assert(c:receive(n)) end
    return status, headers, body
  end

  it("answers GET and HEAD on a kept-alive connection, 404 for unknown paths", function()
    local server = http_server.start { timeout = 5 }
    local results = {}
    helpers.run_serving(copas, function()
      local c = connect(copas, server.port)
      for _, req in ipairs {
        "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /nothing?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        "HEAD /about HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
      } do
        local status, headers, body = request(c, req)
        results[#results + 1] = { status, headers.connection, headers["content-length"], body }
      end
      results[#results + 1] = { c:receive("*l") }
      c:close()
    end, 10, server)
    assert.same({
      { "HTTP/1.1 200 OK", "keep-alive", "17", "hello from copas\n" },
      { "HTTP/1.1 404 Not Found", "keep-alive", "10", "Not Found\n" },
      { "HTTP/1.1 200 OK", "keep-alive", "43", "" },
      { "HTTP/1.1 200 OK", "close", "17", "hello from copas\n" },
      { nil, "closed", "" },
    }, results)
    assert.equal(4, server.stats.requests)
  end)

  it("closes an HTTP/1.0 connection after the response unless asked to keep it", function()
    local server = http_server.start { timeout = 5 }
    local results = {}
    helpers.run_serving(copas, function()
      local c = connect(copas, server.port)
      local status, headers = request(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
      results[1] = { status, headers.connection }
      status, headers = request(c, "GET / HTTP/1.0\r\n\r\n")
      results[2] = { status, headers.connection }
      results[3] = { c:receive("*l") }
      c:close()
    end, 10, server)
    assert.same({
      { "HTTP/1.1 200 OK", "keep-alive" },
      { "HTTP/1.1 200 OK", "close" },
      { nil, "closed", "" },
    }, results)
  end)

  it("drops a client trickling its headers at the deadline and serves others meanwhile", function()
    local timeout = 0.5
    local server = http_server.start { timeout = timeout }
    local slow = { sent = 0 }
    local fast
    helpers.run_serving(copas, function()
      copas.addthread(function()
        slow.connecting = copas.gettime()  -- the server accepts after this
        local c = connect(copas, server.port)
        local text = "GET / HTTP/1.1\r\nHost: t\r\nX-Padding: " .. ("x"):rep(40) .. "\r\n\r\n"
        c:settimeout(0.05)
        for i = 1, #text do                 -- 20 bytes a second at most
          assert(c:send(text:sub(i, i)))
          slow.sent = i
          local _, err = c:receive(1)
          if err ~= "timeout" then
            slow.err, slow.closed = err, copas.gettime()
            break
          end
        end
        c:close()
      end)
      -- a normal client while the slow one is trickling
      copas.pause(0.1)
      local c = connect(copas, server.port)
      fast = { request(c, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n") }
      fast.slow_still_open = slow.closed == nil
      c:close()
      wait_for(copas, function() return slow.closed end, 10, "slow client not dropped")
    end, 20, server)
    assert.equal("HTTP/1.1 200 OK", fast[1])
    assert.is_true(fast.slow_still_open)
    assert.equal("closed", slow.err)
    assert.is_true(slow.sent < 60, "sent " .. slow.sent .. " bytes")   -- headers never completed
    -- the deadline starts when the server accepts, after connect() began
    assert.is_true(slow.closed - slow.connecting >= timeout - 0.01,
      ("dropped %.3f s after connecting"):format(slow.closed - slow.connecting))
    assert.same({ requests = 1, dropped = 1 }, server.stats)
  end)
end)


describe("examples/https_fanout.lua", function()
  local c

  setup(function()
    if certs.available() then c = certs.generate() end
  end)
  teardown(function() certs.cleanup(c) end)

  it("fetches every fast item 10 at a time over verified TLS and abandons the slow ones", function()
    if not c then pending("needs the openssl command") return end
    -- COPAS_TIME_SCALE stretches the deadline where everything runs slower
    -- (make valgrind sets it: TLS under memcheck is some 50 times slower)
    local scale = tonumber(os.getenv("COPAS_TIME_SCALE")) or 1
    local out, code = process.spawn(example("https_fanout",
      ("--items 20 --slow 5 --deadline %g"):format(2 * scale)), 60 + 4 * scale):finish()
    assert.equal(0, code, out)
    assert.matches("local server https://127%.0%.0%.1:%d+: 20 items, slow: 5 10 15 20\n", out)
    local ca = out:match("\nlist: 20 items %(certificate verified against (%S+)%)\n")
    assert(ca, out)
    for id = 1, 20 do
      if id % 5 ~= 0 then assert.matches(("\nitem %d: %%d+ bytes\n"):format(id), out) end
    end
    assert.matches("\ndeadline after [%d.]+ s: 16 fetched, 0 failed, 4 abandoned %(5 10 15 20%)\n", out)
    assert.matches("\nat most 10 fetches at once$", out)
    assert.is_nil(io.open(ca), "the temporary CA was not removed")
  end)

  it("fails when the server's certificate is not signed by the CA it trusts", function()
    if not c then pending("needs the openssl command") return end
    local out, code = run_example("https_fanout",
      "--items 3 --cafile " .. process.quote(c.other_ca_cert))
    assert.equal(1, code, out)
    assert.matches("\nfetching the list failed: TLS/SSL handshake failed: certificate verify failed",
      out, 1, true)
  end)

  it("fetches from a base URL, verifying against --cafile", function()
    if not c then pending("needs the openssl command") return end
    local copas, errors = helpers.reload_strict()
    local server, port = helpers.listen()
    local paths = {}
    copas.addserver(server, copas.handler(function(skt)
      local line = skt:receive("*l") or ""
      repeat local h = skt:receive("*l") until not h or h == ""
      local path = line:match("^GET (%S+) HTTP") or "?"
      paths[#paths + 1] = path
      local body = path == "/api/items" and "alpha beta\ngamma\n" or ("about " .. path)
      skt:send(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s")
        :format(#body, body))
    end, { wrap = certs.server_params(c) }))
    local bg = process.background(example("https_fanout",
      ("https://127.0.0.1:%d/api/ --cafile %s"):format(port, process.quote(c.ca_cert))))
    helpers.run_strict(errors, function()
      wait_for(copas, function() return bg:done() end, 20, "https_fanout did not end")
      copas.removeserver(server)
    end, 30)
    local out, code = bg:output()
    bg:cleanup()
    assert.equal(0, code, out)
    assert.matches("all done after [%d.]+ s: 3 fetched, 0 failed, 0 abandoned\n", out)
    table.sort(paths)
    assert.same({ "/api/items", "/api/items/alpha", "/api/items/beta", "/api/items/gamma" }, paths)
  end)
end)


describe("examples/reuseport.lua", function()
  it("spreads connections over every server process on one port", function()
    local p = process.spawn(example("reuseport", "serve --procs 3 --duration 30"))
    local port, n, list = p:line("^listening on 127%.0%.0%.1:(%d+) with (%d+) processes: ([%d ]+)$")
    port = tonumber(port)
    assert.equal("3", n)
    local pids = {}
    for pid in list:gmatch("%d+") do pids[pid] = 0 end
    local copas, errors = helpers.reload_strict()
    local answered, strangers, stopped = 0, {}, {}
    local function ask(request)
      local c = copas.wrap(socket.tcp())
      c:settimeout(5)
      local ok, err = c:connect("127.0.0.1", port)
      if not ok then return nil, err end
      c:send(request .. "\n")
      local reply, rerr = c:receive("*l")
      c:close()
      return reply, rerr
    end
    helpers.run_strict(errors, function()
      local tasks = copas.limit.new(40)
      for _ = 1, 40 do
        tasks:addthread(function()
          local pid = assert(ask("pid")):match("^pid (%d+)$")
          answered = answered + 1
          if pids[pid] then pids[pid] = pids[pid] + 1 else strangers[#strangers + 1] = pid end
        end)
      end
      tasks:wait()
      -- each stopped server closes its listener: the next "stop" goes to another
      for _ = 1, 20 do
        local reply, err = ask("stop")
        if err == "connection refused" then break end
        if reply then stopped[#stopped + 1] = reply:match("^stopping (%d+)$") end
      end
    end, 20)
    local out, code = p:finish()
    assert.equal(0, code, out)
    assert.equal(40, answered)
    assert.same({}, strangers)
    local used = 0
    for _, k in pairs(pids) do if k > 0 then used = used + 1 end end
    -- the kernel hashes each connection's addresses: all 40 on one of
    -- three sockets has a probability of 3^-39
    assert.is_true(used >= 2, "connections per pid: " .. list)
    table.sort(stopped)
    local expected = {}
    for pid in list:gmatch("%d+") do expected[#expected + 1] = pid end
    table.sort(expected)
    assert.same(expected, stopped)
    for pid in list:gmatch("%d+") do
      assert.matches("worker " .. pid .. " served %d+ connections", out)
    end
  end)

  it("runs the whole demo by itself", function()
    local out, code = run_example("reuseport", "--procs 2 --connections 10")
    assert.equal(0, code, out)
    assert.matches("\n10/10 answered by [12] processes\nstopped 2 servers\n", out)
  end)
end)


describe("the server examples", function()
  it("stop by themselves at their bound", function()
    local runs = {
      { "echo", "0 1", "\nstopping after 1 s$" },
      { "chat", "--duration 1", "\nstopping after 1 s$" },
      { "http_server", "--duration 1", "\nstopping after 1 s: 0 requests, 0 dropped$" },
      { "udp_echo", "server --duration 1", "\nstopping after 1 s$" },
      { "reuseport", "serve --procs 2 --duration 1", "served 0 connections\n.*served 0 connections$" },
    }
    for _, r in ipairs(runs) do r.proc = process.spawn(example(r[1], r[2])) end
    for _, r in ipairs(runs) do
      local out, code = r.proc:finish()
      assert.equal(0, code, r[1] .. ": " .. out)
      assert.matches(r[3], out)
    end
  end)
end)
