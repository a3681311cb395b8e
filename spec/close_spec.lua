-- copas.close (API.md sections 6 and 20.5): waking blocked readers and
-- writers, wrapper close, and descriptor numbers reused by later sockets.
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

local listen = helpers.listen

local function pair(server, port)
  local own = server == nil
  if own then server, port = listen() end
  local a = assert(socket.connect("127.0.0.1", port))
  local b = assert(server:accept())
  if own then server:close() end
  a:settimeout(0)
  b:settimeout(0)
  return a, b
end

local function pack(...) return { ... } end

local BIG = ("x"):rep(32 * 1024 * 1024)


describe("copas.close()", function()
  before_each(fresh_copas)

  it("returns the result of the socket's close", function()
    local a, b = pair()
    assert.same({ 1 }, pack(copas.close(a)))
    b:close()
  end)

  it("wakes a thread blocked in receive with nil, 'closed'", function()
    local a, b = pair()
    local r, closed_at, woke_at
    run(function()
      copas.addthread(function()
        r = pack(copas.receive(b, "*l"))
        woke_at = copas.gettime()
      end)
      copas.pause(0.05)
      closed_at = copas.gettime()
      copas.close(b)
    end, 5)
    a:close()
    assert.same({ nil, "closed" }, { r[1], r[2] })
    assert.is_true(woke_at - closed_at < 0.5, "woke after " .. (woke_at - closed_at))
  end)

  it("wakes a thread blocked in send with full buffers with nil, 'closed'", function()
    local a, b = pair()
    local r, closed_at, woke_at
    run(function()
      copas.addthread(function()
        r = pack(copas.send(b, BIG))
        woke_at = copas.gettime()
      end)
      copas.pause(0.05)
      closed_at = copas.gettime()
      copas.close(b)
    end, 5)
    a:close()
    assert.equal(nil, r[1])
    assert.equal("closed", r[2])
    assert.is_true(r[3] >= 0 and r[3] < #BIG)
    assert.is_true(woke_at - closed_at < 0.5, "woke after " .. (woke_at - closed_at))
  end)

  it("wakes the receiver and the sender of one socket together", function()
    local a, b = pair()
    local r, s
    run(function()
      copas.addthread(function() r = pack(copas.receive(b, "*a")) end)
      copas.addthread(function() s = pack(copas.send(b, BIG)) end)
      copas.pause(0.05)
      copas.close(b)
    end, 5)
    a:close()
    assert.same({ nil, "closed" }, { r[1], r[2] })
    assert.same({ nil, "closed" }, { s[1], s[2] })
  end)

  it("through a wrapper wakes the thread blocked on the wrapped socket", function()
    local a, b = pair()
    local w = copas.wrap(b)
    local r
    run(function()
      copas.addthread(function() r = pack(w:receive("*l")) end)
      copas.pause(0.05)
      w:close()
    end, 5)
    a:close()
    assert.same({ nil, "closed" }, { r[1], r[2] })
    assert.equal(-1, b:getfd())             -- really closed
  end)

  it("ends the loop promptly: the closed socket keeps nothing waiting", function()
    local a, b = pair()
    local t0 = socket.gettime()
    run(function()
      copas.addthread(function() copas.receive(b) end)
      copas.addthread(function() copas.receive(b) end)
      copas.pause(0)
      copas.close(b)
    end, 5)
    a:close()
    assert.is_true(socket.gettime() - t0 < 1)
    assert.is_true(copas.finished())
  end)
end)


describe("a reused descriptor number", function()
  before_each(fresh_copas)

  it("does not wake a thread that was woken by copas.close of the old socket", function()
    local server, port = listen()
    local a1, b1 = pair(server, port)
    local old_fd = b1:getfd()
    local first, resumed, second, fd2 = nil, 0, nil, nil
    run(function()
      copas.addthread(function()
        first = pack(copas.receive(b1, "*l"))
        resumed = resumed + 1
      end)
      copas.pause(0)
      copas.close(b1)
      -- the next descriptor the process gets is the one just freed
      local a2, b2 = pair(server, port)
      local other = b2:getfd() == old_fd and b2 or (a2:getfd() == old_fd and a2) or nil
      fd2 = other and other:getfd()
      if other then
        local peer = other == b2 and a2 or b2
        copas.send(peer, "for the new socket\n")
        second = pack(copas.receive(other, "*l"))
      end
      for _ = 1, 5 do copas.pause(0) end
      a2:close() b2:close()
    end, 5)
    a1:close()
    server:close()
    if fd2 == nil then pending("the freed descriptor was not reused") return end
    assert.same({ nil, "closed" }, { first[1], first[2] })
    assert.equal(1, resumed)
    assert.same({ "for the new socket" }, second)
  end)

  it("never hands the new socket's readiness to a waiter on an old socket closed behind copas' back", function()
    -- The old socket is closed with its own close(), so copas cannot know.
    -- When the new socket claims the descriptor number, the old waiter may
    -- stay waiting or retry on its own (closed) socket and meet "closed";
    -- it must never take the new socket's wake-up or data.
    local server, port = listen()
    local a1, b1 = pair(server, port)
    local old_fd = b1:getfd()
    local old_waiter_result, new_result, fd2, co
    run(function()
      co = copas.addthread(function()
        old_waiter_result = pack(copas.receive(b1, "*l"))
      end)
      copas.pause(0)
      b1:close()
      local a2, b2 = pair(server, port)
      local other = b2:getfd() == old_fd and b2 or (a2:getfd() == old_fd and a2) or nil
      fd2 = other and other:getfd()
      if other then
        local peer = other == b2 and a2 or b2
        local reader = copas.addthread(function()
          new_result = pack(copas.receive(other, "*l"))
        end)
        copas.pause(0)
        copas.send(peer, "for the new socket\n")
        for _ = 1, 200 do
          if new_result then break end
          copas.pause(0.01)
        end
        copas.removethread(reader)
        for _ = 1, 5 do copas.pause(0) end
      end
      copas.removethread(co)
      a2:close() b2:close()
    end, 5)
    a1:close()
    server:close()
    if fd2 == nil then pending("the freed descriptor was not reused") return end
    assert.same({ "for the new socket" }, new_result)
    if old_waiter_result ~= nil then
      assert.same({ nil, "closed", "" }, old_waiter_result)
    end
  end)
end)
