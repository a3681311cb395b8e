-- copas.status() (API.md section 2)
local helpers = require "spec.helpers"
local socket = require "socket"

local copas

local socketpair = helpers.pair

local function counts(st)
  return {
    read = st.read, write = st.write, active = st.active,
    timer = st.timer, inactive = st.inactive, timeout = st.timeout,
  }
end

local ZERO = { read = 0, write = 0, active = 0, timer = 0, inactive = 0, timeout = 0 }

-- true when x has at most 3 decimals (up to floating point rounding, which
-- matters for wall-clock seconds around 1.7e9)
local function three_decimals(x)
  local scaled = x * 1000
  return math.abs(scaled - math.floor(scaled + 0.5)) <= 1e-9 * math.max(1, math.abs(scaled))
end


describe("copas.status()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  after_each(function()
    copas.removeall()
  end)

  it("is all zero on a fresh instance (no internal housekeeping counted)", function()
    local st = copas.status()
    assert.equal(false, st.running)
    assert.same(ZERO, counts(st))
    assert.is_nil(st.steps)
  end)

  it("reports running inside the loop", function()
    local inside
    copas.loop(function() inside = copas.status().running end)
    assert.is_true(inside)
    assert.is_false(copas.status().running)
  end)

  it("counts runnable threads as active", function()
    copas.addthread(function() end)
    copas.addthread(function() end)
    local st = copas.status()
    assert.same({ read = 0, write = 0, active = 2, timer = 0, inactive = 0, timeout = 0 }, counts(st))
  end)

  it("counts sleepers with a deadline as timer, pauseforever threads as inactive", function()
    copas.addthread(function() copas.pause(10) end)
    copas.addthread(function() copas.pause(10) end)
    copas.addthread(function() copas.pauseforever() end)
    copas.step(0)
    assert.same({ read = 0, write = 0, active = 0, timer = 2, inactive = 1, timeout = 0 },
      counts(copas.status()))
  end)

  it("counts armed copas.timeouts", function()
    copas.addthread(function()
      copas.timeout(10, function() end)
      copas.pauseforever()
    end)
    copas.step(0)
    assert.same({ read = 0, write = 0, active = 0, timer = 0, inactive = 1, timeout = 1 },
      counts(copas.status()))
  end)

  it("counts socket readers and servers as read", function()
    local a, b = socketpair()
    local server = assert(socket.bind("127.0.0.1", 0))
    copas.addserver(server, function() end)
    copas.addthread(function() copas.receive(b) end)
    copas.step(0)
    assert.same({ read = 2, write = 0, active = 0, timer = 0, inactive = 0, timeout = 0 },
      counts(copas.status()))
    copas.removeall()
    a:close()
    b:close()
  end)

  it("counts a writer blocked on full buffers as write", function()
    local a, b = socketpair()
    local big = string.rep("x", 64 * 1024 * 1024)
    local res
    copas.addthread(function() res = { copas.send(a, big) } end)
    helpers.step_until(function()
      return res or copas.status().write == 1
    end, 10, "the writer never blocked")
    assert.is_nil(res, "64 MB were sent without blocking")
    local st = copas.status()
    assert.same({ read = 0, write = 1, active = 0, timer = 0, inactive = 0, timeout = 0 }, counts(st))
    copas.removeall()
    a:close()
    b:close()
  end)

  it("is zero again after the work is done", function()
    copas.addthread(function() copas.pause(0.01) end)
    copas.loop()
    assert.same(ZERO, counts(copas.status()))
  end)
end)


describe("copas.status(true) statistics", function()

  before_each(function()
    copas = helpers.reload()
  end)

  after_each(function()
    copas.status(false)
    copas.removeall()
  end)

  local STAT_FIELDS = {
    "steps", "duration_tot", "duration_min", "duration_max", "duration_avg",
    "duration_min_ever", "duration_max_ever", "time_start", "time_end", "time_tot", "time_avg",
  }

  it("adds the statistics fields on later calls", function()
    local first = copas.status(true)
    assert.equal("table", type(first))
    for _ = 1, 5 do
      copas.addthread(function() end)
      copas.step(0)
    end
    local st = copas.status()
    for _, f in ipairs(STAT_FIELDS) do
      assert.equal("number", type(st[f]), f)
      assert.is_true(three_decimals(st[f]), f .. " has more than 3 decimals: " .. st[f])
      assert.is_true(st[f] >= 0, f)
    end
    assert.equal(5, st.steps)
    assert.is_true(st.duration_min <= st.duration_max)
    assert.is_true(st.duration_min <= st.duration_avg + 0.001)
    assert.is_true(st.duration_avg <= st.duration_max + 0.001)
    assert.is_true(st.duration_min_ever <= st.duration_min)
    assert.is_true(st.duration_max_ever >= st.duration_max)
    assert.is_true(st.time_end >= st.time_start)
    assert.is_true(math.abs(st.time_tot - (st.time_end - st.time_start)) <= 0.002)
    -- time_start is wall-clock seconds, like gettime
    assert.is_true(math.abs(st.time_start - copas.gettime()) < 60)
  end)

  -- a thread that is runnable in every round
  local function busy()
    return copas.addthread(function()
      while true do copas.pause(0) end
    end)
  end

  it("counts a round that had nothing to do", function()
    copas.status(true)
    for _ = 1, 3 do copas.step(0) end
    assert.equal(3, copas.status().steps)
  end)

  it("starts a new window on every call, keeping the _ever values", function()
    busy()
    copas.status(true)
    for _ = 1, 4 do copas.step(0) end
    local w1 = copas.status()
    assert.equal(4, w1.steps)
    for _ = 1, 2 do copas.step(0) end
    local w2 = copas.status()
    assert.equal(2, w2.steps)
    assert.is_true(w2.time_start >= w1.time_start)
    assert.is_true(w2.duration_max_ever >= w1.duration_max)
    assert.is_true(w2.duration_max_ever >= w2.duration_max)
    assert.is_true(w2.duration_min_ever <= w1.duration_min)
    local w3 = copas.status()
    assert.equal(0, w3.steps)
  end)

  it("measures the time spent running threads", function()
    copas.status(true)
    copas.addthread(function()
      local t0 = os.clock()
      while os.clock() - t0 < 0.02 do end   -- hold the CPU for 20 ms
    end)
    copas.step(0)
    local st = copas.status()
    assert.equal(1, st.steps)
    assert.is_true(st.duration_max >= 19, "duration_max " .. st.duration_max .. " ms")
    assert.is_true(st.duration_tot >= 19)
  end)

  it("excludes the wait from the durations", function()
    copas.status(true)
    local co = copas.addthread(function() copas.pause(3600) end)
    copas.step(0)
    copas.step(0.5)      -- waits, runs nothing
    local st = copas.status()
    assert.equal(2, st.steps)
    assert.is_true(st.time_tot >= 0.5 - 0.002)
    assert.is_true(st.duration_tot < 500, "the wait was counted: " .. st.duration_tot .. " ms")
    copas.removethread(co)
  end)

  it("status(false) switches them off", function()
    busy()
    copas.status(true)
    copas.step(0)
    assert.equal(1, copas.status().steps)
    copas.status(false)
    local st = copas.status()
    assert.is_nil(st.steps)
    assert.is_nil(st.duration_tot)
    assert.is_nil(st.time_start)
  end)
end)
