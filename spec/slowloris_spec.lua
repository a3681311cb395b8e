-- Issue #7, slowloris: many connections that send a request's headers at
-- about one byte a second, to hold every connection a server can take.
-- examples/http_server.lua reads each request's headers against one
-- deadline (the receive timeout is the time left, so trickling bytes does
-- not extend it): every attacker must be dropped by the server at that
-- deadline, and a normal client must be answered while the attack is on.
--
-- The server is a separate process (spec/process.lua), so each process
-- holds about 500 descriptors: within a default `ulimit -n` of 1024 and
-- below select()'s FD_SETSIZE, so the spec runs on every poller. With a
-- lower limit the attack is scaled down to fit.
local helpers = require "spec.helpers"
local process = require "spec.process"
local socket = require "socket"

local ATTACKERS = 500
local TIMEOUT = 2          -- the server's header deadline, seconds
local MAX_BYTES = 8        -- an attacker still open after this many seconds failed

-- the soft limit on open descriptors of a child process (of this one too)
local function fd_limit()
  local f = io.popen("ulimit -n")
  local out = f:read("*a") or ""
  f:close()
  if out:match("unlimited") then return math.huge end
  return tonumber(out:match("%d+")) or 1024
end

describe("slowloris against examples/http_server.lua (issue #7)", function()
  it("drops every slow attacker at the header deadline and answers a normal client meanwhile", function()
    local n = math.min(ATTACKERS, fd_limit() - 64)
    if n < 50 then pending("ulimit -n is too low for the attack") return end

    local server = process.background(("%s examples/http_server.lua --timeout %d --duration 60 --log")
      :format(process.lua(), TIMEOUT))
    local port
    local wait_until = socket.gettime() + 20
    repeat                                 -- no loop is running yet: plain waiting
      port = tonumber(server:output():match("listening on 127%.0%.0%.1:(%d+)"))
      if not port then socket.sleep(0.02) end
    until port or socket.gettime() > wait_until
    assert(port, "the server did not start: " .. server:output())

    local copas, errors = helpers.reload_strict()
    local attackers = {}
    local started, open, dropped, survived = 0, 0, 0, 0
    local kinds = {}
    local normal = {}
    local request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n\r\n"

    local function attack(a)
      local c = copas.wrap(socket.tcp())
      c:settimeout(10)
      a.connecting = copas.gettime()     -- the server accepts after this
      local ok, err = c:connect("127.0.0.1", port)
      if not ok then
        a.err = "connect: " .. tostring(err)
        return
      end
      open = open + 1
      c:settimeouts(nil, 5, 1)           -- the 1 s receive timeout paces the bytes
      for i = 1, MAX_BYTES do
        local sent, serr = c:send(request:sub(i, i))
        if i == 1 then started = started + 1 end
        local data, rerr = nil, serr
        if sent then data, rerr = c:receive(1) end
        if data then
          a.err = "unexpected data"
          break
        elseif rerr ~= "timeout" then    -- the server closed the connection
          a.closed, a.err = copas.gettime(), rerr
          kinds[rerr] = (kinds[rerr] or 0) + 1
          dropped = dropped + 1
          break
        end
      end
      if not a.closed and not a.err then survived = survived + 1 end
      open = open - 1
      c:close()
    end

    local function normal_client()
      local c = copas.wrap(socket.tcp())
      c:settimeout(10)
      assert(c:connect("127.0.0.1", port))
      for i = 1, 3 do
        local last = i == 3 and "Connection: close\r\n" or ""
        assert(c:send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" .. last .. "\r\n"))
        local status = c:receive("*l")
        repeat local line = c:receive("*l") until not line or line == ""
        normal[i] = { status = status, body = c:receive(17), open = open, dropped = dropped }
      end
      c:close()
    end

    helpers.run_strict(errors, function()
      for i = 1, n do
        attackers[i] = {}
        copas.addthread(attack, attackers[i])
      end
      -- the normal client starts once every attacker is connected and
      -- has sent its first byte
      local deadline = copas.gettime() + 30
      while started < n and copas.gettime() < deadline do copas.pause(0.01) end
      assert(started == n, ("only %d of %d attackers started"):format(started, n))
      normal_client()
      while open > 0 and copas.gettime() < deadline do copas.pause(0.05) end
    end, 60)

    server:kill()
    local log
    local wait_exit = socket.gettime() + 10
    repeat
      local code
      log, code = server:output()
      if not code then socket.sleep(0.02) end
    until code or socket.gettime() > wait_exit
    server:cleanup()

    -- the normal client was answered while the attack held its connections
    for i = 1, 3 do
      assert.same({ "HTTP/1.1 200 OK", "hello from copas\n" },
        { normal[i].status, normal[i].body })
    end
    assert.is_true(normal[3].dropped < n and normal[3].open > 0,
      ("answered after %d of %d attackers were dropped"):format(normal[3].dropped, n))
    -- every attacker was closed by the server, none before its deadline
    local errs = {}
    for _, a in ipairs(attackers) do
      if a.err and not a.closed then errs[#errs + 1] = a.err end
    end
    assert.same({}, errs)
    assert.equal(0, survived)
    assert.equal(n, dropped)
    for _, a in ipairs(attackers) do
      -- the deadline starts at the server's accept, after connect() began
      assert.is_true(a.closed - a.connecting >= TIMEOUT - 0.01,
        ("dropped %.3f s after connecting"):format(a.closed - a.connecting))
    end
    for kind in pairs(kinds) do
      assert.is_true(kind == "closed" or kind == "connection reset by peer", kind)
    end
    -- the server's view: n header timeouts, the normal client's 3 requests
    assert.equal(n, select(2, log:gsub("no complete request headers within", "")))
    assert.equal(3, select(2, log:gsub("GET / %-> 200", "")))
  end)
end)
