-- socket timeouts (API.md sections 6 and 8): settimeout, settimeouts,
-- one deadline per call, timeout 0, useSocketTimeoutErrors, waiters sharing
-- a socket, and the _TEST registers.

-- the registers only exist when _TEST is set before copas loads
_G._TEST = true

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

local pair = helpers.pair

local function pack(...) return { ... } end

local BIG = ("0123456789abcdef"):rep(2 * 1024 * 1024)   -- 32 MB: more than the socket buffers

-- A listener whose accept queue is full, so that a further connect really
-- blocks: on Linux a listen(1) socket holds two completed connections, then
-- SYNs are dropped and the connecting side keeps retransmitting (SYN_SENT).
-- Must run in a thread. Returns the listener, its port and the sockets
-- used to fill it, or nil and a reason when every connect completed.
local function full_backlog()
  local l = socket.tcp()
  assert(l:bind("127.0.0.1", 0))
  assert(l:listen(1))
  local _, port = l:getsockname()
  local fillers = {}
  for _ = 1, 16 do
    local t = socket.tcp()
    fillers[#fillers + 1] = t
    copas.settimeout(t, 0.2)
    local ok, err = copas.connect(t, "127.0.0.1", port)
    if not ok then
      assert(err == "timeout", err)
      return l, tonumber(port), fillers
    end
  end
  for _, t in ipairs(fillers) do t:close() end
  l:close()
  return nil, "16 connects to a listen(1) socket all completed"
end

local function close_all(l, fillers)
  for _, t in ipairs(fillers or {}) do t:close() end
  if l then l:close() end
end


describe("copas.settimeout()", function()
  before_each(fresh_copas)

  it("returns true for a number, nil or a negative value", function()
    local a, b = pair()
    assert.is_true(copas.settimeout(b, 1))
    assert.is_true(copas.settimeout(b, 0))
    assert.is_true(copas.settimeout(b, nil))
    assert.is_true(copas.settimeout(b, -1))
    assert.is_true(copas.settimeout(b, math.huge))
    a:close() b:close()
  end)

  it("returns nil, \"timeout must be 'nil' or a number\" for other types", function()
    local a, b = pair()
    assert.same({ nil, "timeout must be 'nil' or a number" }, pack(copas.settimeout(b, "1")))
    assert.same({ nil, "timeout must be 'nil' or a number" }, pack(copas.settimeout(b, {})))
    a:close() b:close()
  end)

  it("limits receive and send", function()
    local a, b = pair()
    assert(copas.settimeout(b, 0.2))
    local r, s, tr, ts
    run(function()
      local t0 = copas.gettime()
      r = pack(copas.receive(b, "*l"))
      tr = copas.gettime() - t0
      t0 = copas.gettime()
      s = pack(copas.send(b, BIG))
      ts = copas.gettime() - t0
    end)
    a:close() b:close()
    assert.same({ nil, "timeout", "" }, r)
    assert.is_true(tr >= 0.2, "receive timed out after " .. tr)
    assert.equal(nil, s[1])
    assert.equal("timeout", s[2])
    assert.is_true(s[3] > 0 and s[3] < #BIG, "last index " .. tostring(s[3]))
    assert.is_true(ts >= 0.2, "send timed out after " .. ts)
  end)

  it("with nil removes all limits", function()
    local a, b = pair()
    assert(copas.settimeout(b, 0.1))
    assert(copas.settimeout(b, nil))
    local r, waited
    run(function()
      copas.addthread(function()
        copas.pause(0.3)
        copas.send(a, "late\n")
      end)
      local t0 = copas.gettime()
      r = pack(copas.receive(b))
      waited = copas.gettime() - t0
    end)
    a:close() b:close()
    assert.same({ "late" }, r)
    assert.is_true(waited >= 0.3)
  end)

  it("limits connect", function()
    local res, raw, elapsed
    run(function()
      local l, port, fillers = full_backlog()
      if not l then res = port return end
      local t = socket.tcp()
      assert(copas.settimeout(t, 0.3))
      local t0 = copas.gettime()
      res = pack(copas.connect(t, "127.0.0.1", port))
      elapsed = copas.gettime() - t0
      t:close()
      local t2 = socket.tcp()
      copas.settimeout(t2, 0.1)
      copas.useSocketTimeoutErrors(true)
      raw = pack(copas.connect(t2, "127.0.0.1", port))
      t2:close()
      close_all(l, fillers)
    end)
    if type(res) == "string" then pending(res) return end
    assert.same({ nil, "timeout" }, res)
    assert.is_true(elapsed >= 0.3, "connect timed out after " .. tostring(elapsed))
    assert.same({ nil, "Operation already in progress" }, raw)
  end)
end)


describe("copas.settimeouts()", function()
  before_each(fresh_copas)

  it("names the invalid value", function()
    local a, b = pair()
    assert.same({ nil, "connect timeout must be 'nil' or a number" }, pack(copas.settimeouts(b, "x")))
    assert.same({ nil, "send timeout must be 'nil' or a number" }, pack(copas.settimeouts(b, nil, "x")))
    assert.same({ nil, "read timeout must be 'nil' or a number" }, pack(copas.settimeouts(b, nil, nil, "x")))
    assert.same({ nil, "connect timeout must be 'nil' or a number" }, pack(copas.settimeouts(b, "x", "y", "z")))
    assert.same({ nil, "send timeout must be 'nil' or a number" }, pack(copas.settimeouts(b, 1, "y", "z")))
    assert.is_true(copas.settimeouts(b, 1, 2, 3))
    assert.is_true(copas.settimeouts(b))
    a:close() b:close()
  end)

  it("applies the values before an invalid one and none after it", function()
    local a, b = pair()
    -- send 0.2 is applied, then "bad" read stops it
    assert.same({ nil, "read timeout must be 'nil' or a number" }, pack(copas.settimeouts(b, nil, 0.2, "bad")))
    -- send "bad" stops it before the receive value 0.1 is applied
    assert.same({ nil, "send timeout must be 'nil' or a number" }, pack(copas.settimeouts(b, nil, "bad", 0.1)))
    local s, r
    run(function()
      s = pack(copas.send(b, BIG))
      copas.addthread(function()
        copas.pause(0.3)
        copas.send(a, "late\n")
      end)
      r = pack(copas.receive(b, 4))
    end)
    a:close() b:close()
    assert.equal("timeout", s[2])
    assert.same({ "late" }, r)
  end)

  it("sets each kind separately: nil keeps a value, negative removes it", function()
    local a, b = pair()
    assert(copas.settimeouts(b, nil, nil, 0.2))       -- receive only
    local sent, r1, r2, r3
    run(function()
      -- send has no limit: completes once the peer drains, 0.3 s later
      copas.addthread(function()
        copas.pause(0.3)
        local got = copas.receive(a, #BIG)
        assert(got and #got == #BIG, "peer did not get the data")
      end)
      sent = pack(copas.send(b, BIG))
      r1 = pack(copas.receive(b, "*l"))               -- limited
      assert(copas.settimeouts(b, nil, nil, nil))      -- unchanged
      r2 = pack(copas.receive(b, "*l"))
      assert(copas.settimeouts(b, nil, nil, -1))       -- removed
      copas.addthread(function()
        copas.pause(0.3)
        copas.send(a, "late\n")
      end)
      r3 = pack(copas.receive(b, "*l"))
    end, 20)
    a:close() b:close()
    assert.same({ #BIG }, sent)
    assert.same({ nil, "timeout", "" }, r1)
    assert.same({ nil, "timeout", "" }, r2)
    assert.same({ "late" }, r3)
  end)
end)


describe("receive timeouts", function()
  before_each(fresh_copas)

  it("return exactly nil, 'timeout' and the partial data", function()
    local a, b = pair()
    copas.settimeout(b, 0.2)
    local r, elapsed
    run(function()
      copas.send(a, "par")
      local t0 = copas.gettime()
      r = pack(copas.receive(b, "*l"))
      elapsed = copas.gettime() - t0
    end)
    a:close() b:close()
    assert.same({ nil, "timeout", "par" }, r)
    assert.is_true(elapsed >= 0.2)
  end)

  it("use one deadline for the whole call: data trickling in does not extend it", function()
    local a, b = pair()
    copas.settimeout(b, 0.5)
    local r, elapsed, peer_stopped
    run(function()
      local stop = false
      copas.addthread(function()
        -- a byte every 0.1 s for up to 3 s, never a line end
        for _ = 1, 30 do
          if stop then break end
          copas.send(a, "x")
          copas.pause(0.1)
        end
        peer_stopped = copas.gettime()
      end)
      local t0 = copas.gettime()
      r = pack(copas.receive(b, "*l"))
      elapsed = copas.gettime() - t0
      stop = true
    end, 10)
    a:close() b:close()
    assert.equal(nil, r[1])
    assert.equal("timeout", r[2])
    assert.matches("^x+$", r[3])
    assert.is_true(elapsed >= 0.5, "timed out early: " .. elapsed)
    assert.is_true(elapsed < 1.5, "deadline was extended: " .. elapsed)
    assert.is_truthy(peer_stopped)
  end)

  it("with timeout 0 return on the first data instead of polling", function()
    local a, b = pair()
    copas.settimeout(b, 0)
    local r1, r2, waited
    run(function()
      copas.addthread(function()
        copas.pause(0.2)
        copas.send(a, "ab")
      end)
      local t0 = copas.gettime()
      r1 = pack(copas.receive(b, "*l"))
      waited = copas.gettime() - t0
      copas.send(a, "cd\n")
      r2 = pack(copas.receive(b, "*l", r1[3]))
    end)
    a:close() b:close()
    assert.is_true(waited >= 0.2, "did not wait for data: " .. waited)
    assert.same({ nil, "timeout", "ab" }, r1)
    assert.same({ "abcd" }, r2)
  end)

  it("leave the socket usable", function()
    local a, b = pair()
    copas.settimeout(b, 0.1)
    local r1, r2
    run(function()
      r1 = pack(copas.receive(b, "*l"))
      copas.send(a, "next\n")
      r2 = pack(copas.receive(b, "*l"))
    end)
    a:close() b:close()
    assert.same({ nil, "timeout", "" }, r1)
    assert.same({ "next" }, r2)
  end)
end)


describe("send timeouts", function()
  before_each(fresh_copas)

  it("return nil, 'timeout' and the exact index of the last byte sent", function()
    local a, b = pair()
    copas.settimeout(b, 0.2)
    local r, rest, got, elapsed
    run(function()
      local t0 = copas.gettime()
      r = pack(copas.send(b, BIG))
      elapsed = copas.gettime() - t0
      -- the socket stays usable: send the rest while the peer drains
      copas.settimeout(b, nil)
      copas.addthread(function()
        got = copas.receive(a, #BIG)
      end)
      rest = pack(copas.send(b, BIG, r[3] + 1))
      while not got do copas.pause(0.01) end
    end, 20)
    a:close() b:close()
    assert.equal(nil, r[1])
    assert.equal("timeout", r[2])
    assert.is_true(r[3] > 0 and r[3] < #BIG, "last index " .. tostring(r[3]))
    assert.is_true(elapsed >= 0.2)
    assert.same({ #BIG }, rest)
    assert.is_true(got == BIG, "the peer did not get the data once, in order")
  end)
end)


describe("copas.useSocketTimeoutErrors()", function()
  before_each(fresh_copas)

  it("has the lower-case alias copas.usesockettimeouterrors", function()
    assert.is_function(copas.useSocketTimeoutErrors)
    assert.equal(copas.useSocketTimeoutErrors, copas.usesockettimeouterrors)
  end)

  it("returns the raw error for the calling thread only", function()
    local res, l, fillers = {}, nil, nil
    run(function()
      local port
      l, port, fillers = full_backlog()
      if not l then res.skip = port return end
      local function attempt(raw)
        if raw ~= nil then copas.useSocketTimeoutErrors(raw) end
        local t = socket.tcp()
        copas.settimeout(t, 0.1)
        local r = pack(copas.connect(t, "127.0.0.1", port))
        t:close()
        return r
      end
      local t1 = copas.addthread(function() res.raw = attempt(true) end)
      local t2 = copas.addthread(function() res.plain = attempt() end)
      local t3 = copas.addthread(function() res.off = attempt(false) end)
      assert(t1 and t2 and t3)
      while not (res.raw and res.plain and res.off) do copas.pause(0.02) end
    end)
    close_all(l, fillers)
    if res.skip then pending(res.skip) return end
    assert.same({ nil, "Operation already in progress" }, res.raw)
    assert.same({ nil, "timeout" }, res.plain)
    assert.same({ nil, "timeout" }, res.off)
  end)

  it("keeps 'timeout' for plain TCP receive and send", function()
    local a, b = pair()
    copas.settimeout(b, 0.1)
    local r, s
    run(function()
      copas.usesockettimeouterrors(true)
      r = pack(copas.receive(b, "*l"))
      s = pack(copas.send(b, BIG))
    end)
    a:close() b:close()
    assert.same({ nil, "timeout", "" }, r)
    assert.equal("timeout", s[2])
  end)
end)


describe("several threads waiting on one socket", function()
  before_each(fresh_copas)

  it("are served in FIFO order, one per readiness event", function()
    local a, b = pair()
    local order = {}
    run(function()
      local function reader(name)
        return function()
          local line = copas.receive(b, "*l")
          order[#order + 1] = name .. "=" .. tostring(line)
        end
      end
      copas.addthread(reader("A"))
      copas.addthread(reader("B"))
      copas.pause(0.05)
      copas.send(a, "1\n")
      while #order < 1 do copas.pause(0.01) end
      copas.send(a, "2\n")
      while #order < 2 do copas.pause(0.01) end
    end)
    a:close() b:close()
    assert.same({ "A=1", "B=2" }, order)
  end)

  it("never let a timed-out waiter absorb the wake-up of the next one (upstream #208)", function()
    -- 4.11 left the timed-out reader registered on the socket; the next
    -- readiness event went to it and the real waiter hung
    local a, b = pair()
    local ra, rb, woke_in
    run(function()
      copas.settimeout(b, 0.1)          -- deadlines are taken at the call's start
      copas.addthread(function() ra = pack(copas.receive(b, "*l")) end)
      copas.pause(0)                    -- A is waiting (deadline 0.1 s)
      copas.settimeout(b, nil)
      copas.addthread(function() rb = pack(copas.receive(b, "*l")) end)
      copas.pause(0)                    -- B is waiting (no deadline)
      while not ra do copas.pause(0.01) end
      local t0 = copas.gettime()
      copas.send(a, "for B\n")
      for _ = 1, 200 do
        if rb then break end
        copas.pause(0.01)
      end
      woke_in = copas.gettime() - t0
      if not rb then copas.close(b) end -- release B so the loop ends
    end)
    a:close() b:close()
    assert.same({ nil, "timeout", "" }, ra)
    assert.same({ "for B" }, rb)
    assert.is_true(woke_in < 1)
  end)
end)


describe("_TEST registers", function()
  before_each(fresh_copas)

  it("exist when _TEST is set before loading", function()
    assert.is_table(copas._socket_register)
    assert.is_table(copas._operation_register)
    assert.is_table(copas._timeout_flags)
  end)

  it("hold an entry only while a thread is inside a socket operation", function()
    local a, b = pair()
    copas.settimeout(b, 0.2)
    local co, during, after, r
    run(function()
      co = copas.addthread(function() r = pack(copas.receive(b, "*l")) end)
      copas.pause(0.05)
      during = {
        skt = copas._socket_register[co],
        op = copas._operation_register[co],
      }
      while not r do copas.pause(0.01) end
      after = {
        skt = copas._socket_register[co],
        op = copas._operation_register[co],
        flag = copas._timeout_flags[co],
      }
    end)
    a:close() b:close()
    assert.same({ nil, "timeout", "" }, r)
    assert.equal(b, during.skt)
    assert.is_not_nil(during.op)
    assert.is_nil(after.skt)
    assert.is_nil(after.op)
    assert.is_nil(after.flag)
    assert.is_nil(next(copas._socket_register))
    assert.is_nil(next(copas._operation_register))
    assert.is_nil(next(copas._timeout_flags))
  end)
end)
