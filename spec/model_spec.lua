-- Randomised model test of the scheduling order (API.md sections 1, 3, 9, 16).
--
-- Each seed plays a few hundred random operations (addthread, pause(0),
-- pauseforever, a long pause ended by wakeup, wakeup, removethread,
-- copas.limit sets: addthread, removethread, wait) from the main chunk
-- between steps and from inside the threads themselves, and a reference
-- model predicts which thread runs next. The untimed part is exact:
--   * runnable threads run in the order they became runnable;
--   * a round runs only what was runnable when it began (pause(0), a
--     wakeup, a new thread, a freed limit slot all wait a round);
--   * woken threads run in wake order, released joiners in join order;
--   * a removed thread never runs again; wakeup says whether it woke one;
--   * a set never counts more than maxt tasks and starts queued ones in
--     the order they were added.
-- Timed pauses only get a partial order, from bounds measured around each
-- pause call, so a slow machine can skip comparisons but never fail one.
-- On a mismatch the message names the seed and the last events.
local helpers = require "spec.helpers"

local SEEDS = 20
local STEPS = 100           -- steps per seed, each with up to 2 main-chunk ops
local MAX_THREADS = 80      -- threads created per seed, at most
local NSETS = 3

-- Park-Miller: the same sequence on every Lua (no integer overflow)
local function prng(seed)
  local x = seed % 2147483646 + 1
  return function(n)
    x = (x * 16807) % 2147483647
    return x % n + 1
  end
end


local function remove_value(list, v)
  for i = 1, #list do
    if list[i] == v then
      table.remove(list, i)
      return i
    end
  end
end


-- one seed of the untimed model; returns nil or a failure message
local function play(seed)
  local copas = helpers.reload()
  local limit = require "copas.limit"
  local rand = prng(seed)
  local failure
  local history = {}

  local function note(s)
    history[#history + 1] = s
    if #history > 12 then table.remove(history, 1) end
  end

  local function fail(msg)
    if not failure then
      failure = ("seed %d: %s\n  last events: %s"):format(seed, msg, table.concat(history, ", "))
    end
  end

  copas.seterrorhandler(function(err) fail("thread error: " .. tostring(err)) end, true)

  -- the model
  local ready = {}          -- thread ids, in the order they became runnable
  local due = 0             -- ready[1..due] were runnable when the round began
  local st = {}             -- id -> "ready" | "running" | "forever" | "sleep"
                            --       | "join" | "queued" | "gone"
  local co_of, task_of = {}, {}   -- id -> coroutine; id -> set index counting it
  local doomed = {}         -- removed while running: gone at its next yield
  local sets = {}           -- { h = limit set, max, count, queue = {ids}, joiners = {ids} }
  local active = {}         -- set index -> tasks started and not ended
  local started = {}        -- id -> has run once
  local nthreads = 0
  local body

  for s = 1, NSETS do
    local max = rand(3)
    sets[s] = { h = limit.new(max), max = max, count = 0, queue = {}, joiners = {} }
    active[s] = 0
  end

  local function make_ready(id)
    st[id] = "ready"
    ready[#ready + 1] = id
  end

  local function take_out(id)
    -- out of whatever queue the model has it in
    local s = st[id]
    if s == "ready" then
      local i = remove_value(ready, id)
      if i <= due then due = due - 1 end
    elseif s == "join" then
      for k = 1, NSETS do remove_value(sets[k].joiners, id) end
    elseif s == "queued" then
      for k = 1, NSETS do remove_value(sets[k].queue, id) end
    end
  end

  local function refill(k)
    local set = sets[k]
    while set.count < set.max and #set.queue > 0 do
      local id = table.remove(set.queue, 1)
      set.count = set.count + 1
      make_ready(id)
    end
    if set.count == 0 and #set.queue == 0 then
      while #set.joiners > 0 do make_ready(table.remove(set.joiners, 1)) end
    end
  end

  -- the task leaves its set (ended, removed, or let go)
  local function untask(id)
    local k = task_of[id]
    if not k then return end
    task_of[id] = nil
    if st[id] == "queued" then
      take_out(id)
      st[id] = "gone"
    else
      sets[k].count = sets[k].count - 1
      if started[id] then active[k] = active[k] - 1 end
    end
    refill(k)
  end

  local function gone(id)
    untask(id)
    take_out(id)
    st[id] = "gone"
  end

  local function new_thread(k)
    if nthreads >= MAX_THREADS then return end
    nthreads = nthreads + 1
    local id = nthreads
    if k then
      local set = sets[k]
      co_of[id] = set.h:addthread(body, id)
      task_of[id] = k
      if set.count < set.max then
        set.count = set.count + 1
        make_ready(id)
      else
        st[id] = "queued"
        set.queue[#set.queue + 1] = id
      end
    else
      co_of[id] = copas.addthread(body, id)
      make_ready(id)
    end
    note("add " .. id .. (k and ("@" .. k) or ""))
  end

  local function any_thread()
    if nthreads == 0 then return nil end
    return rand(nthreads)
  end

  -- an operation that does not yield; `me` is the running thread or nil
  local function side_op(me)
    local r = rand(10)
    if r <= 3 then
      local id = any_thread()
      if not id then return end
      local ok, err = copas.wakeup(co_of[id])
      local expect = st[id] == "forever" or st[id] == "sleep"
      note("wake " .. id .. (ok and "+" or "-"))
      if expect then
        if ok ~= true then fail("wakeup(" .. id .. ") in " .. st[id] .. " returned " .. tostring(ok)) end
        make_ready(id)
      elseif ok ~= nil or err ~= "not sleeping" then
        fail("wakeup(" .. id .. ") in " .. st[id] .. " returned " .. tostring(ok) .. ", " .. tostring(err))
      end
    elseif r <= 5 then
      local id = any_thread()
      if not id then return end
      copas.removethread(co_of[id])
      note("remove " .. id)
      if id == me then
        doomed[id] = true
      elseif st[id] ~= "gone" then
        gone(id)
      end
    elseif r <= 7 then
      new_thread(nil)
    elseif r <= 9 then
      new_thread(rand(NSETS))
    else
      local id = any_thread()
      if not id then return end
      local k = rand(NSETS)
      sets[k].h:removethread(co_of[id])
      note("untask " .. id .. "@" .. k)
      if task_of[id] == k then untask(id) end
    end
  end

  -- thread `id` runs: check it is the one the model expects
  local function on_run(id)
    note("run " .. id)
    if due < 1 or ready[1] ~= id then
      fail(("thread %d ran; expected %s"):format(id, due >= 1 and tostring(ready[1]) or "none this round"))
      return
    end
    table.remove(ready, 1)
    due = due - 1
    st[id] = "running"
    local k = task_of[id]
    if k and not started[id] then
      started[id] = true
      active[k] = active[k] + 1
      if active[k] > sets[k].max then
        fail(("set %d runs %d tasks, maxt %d"):format(k, active[k], sets[k].max))
      end
    end
  end

  -- the thread's next suspension; false when it ends
  local suspend
  suspend = function(id)
    if doomed[id] then
      -- removed while running: dropped at this yield, never resumed
      note("yield-doomed " .. id)
      gone(id)
      copas.pause(0)
      fail("thread " .. id .. " ran after its removal")
      return false
    end
    local r = rand(20)
    if r <= 8 then
      note("pause0 " .. id)
      make_ready(id)
      local dt = copas.pause(0)
      if type(dt) ~= "number" or dt < 0 then fail("pause(0) returned " .. tostring(dt)) end
    elseif r <= 11 then
      note("forever " .. id)
      st[id] = "forever"
      copas.pauseforever()
    elseif r <= 13 then
      note("sleep " .. id)
      st[id] = "sleep"
      copas.pause(1000)
    elseif r <= 16 then
      local k = rand(NSETS)
      local set = sets[k]
      if set.count == 0 and #set.queue == 0 then
        set.h:wait()                        -- returns at once, no yield
        note("wait-idle " .. id .. "@" .. k)
        return suspend(id)
      end
      note("join " .. id .. "@" .. k)
      st[id] = "join"
      set.joiners[#set.joiners + 1] = id
      set.h:wait()
    else
      note("end " .. id)
      gone(id)
      return false
    end
    return true
  end

  body = function(id)
    repeat
      on_run(id)
      for _ = 1, rand(3) - 1 do side_op(id) end
    until not suspend(id)
  end

  for step = 1, STEPS do
    for _ = 1, rand(3) - 1 do side_op(nil) end
    if step == 1 then new_thread(nil) end
    due = #ready
    note("step " .. step)
    copas.step(0)
    if due ~= 0 then
      fail(("step %d ended with %d threads of its round not run (next: %s)"):format(step, due, tostring(ready[1])))
    end
    for k = 1, NSETS do
      if sets[k].h.count ~= sets[k].count then
        fail(("set %d counts %d, model %d"):format(k, sets[k].h.count, sets[k].count))
      end
    end
    if failure then break end
  end

  -- removeall: nothing runs any more and every set is empty
  copas.removeall()
  for k = 1, NSETS do
    if not failure and sets[k].h.count ~= 0 then
      fail(("set %d counts %d after removeall"):format(k, sets[k].h.count))
    end
  end
  due = 0
  ready = {}
  copas.step(0)
  if not failure and not copas.finished() then fail("not finished after removeall") end
  return failure, nthreads
end


describe("scheduling order against a model", function()

  it("untimed operations: " .. SEEDS .. " seeds", function()
    local created = 0
    for seed = 1, SEEDS do
      local failure, n = play(seed)
      assert(failure == nil, failure)
      created = created + n
    end
    -- the seeds did exercise something
    assert.is_true(created > SEEDS * 10)
  end)


  it("timed pauses: equal pauses in pause order, others by deadline bounds", function()
    local SLOTS = { 0.004, 0.008, 0.012, 0.016 }
    local compared = 0
    for seed = 1, 8 do
      local copas, errors = helpers.reload_strict()
      local rand = prng(1000 + seed)
      local n = 8
      local d, before, after, woke, order = {}, {}, {}, {}, {}
      local now = copas.gettime
      for i = 1, n do
        d[i] = SLOTS[rand(#SLOTS)]
        copas.addthread(function()
          before[i] = now()
          if i > 1 then after[i - 1] = before[i] end
          local dt = copas.pause(d[i])
          woke[i] = now()
          order[#order + 1] = i
          assert(dt >= d[i] - 1e-9, ("pause(%g) returned %g: early"):format(d[i], dt))
        end)
      end
      -- runs last in the same round: bounds the last pause's start
      copas.addthread(function() after[n] = now() end)
      helpers.run_strict(errors, nil, 5)
      assert.equal(n, #order)
      local pos = {}
      for k, i in ipairs(order) do
        pos[i] = k
        -- never early, on the wall clock too (1 ms for the two clocks)
        assert(woke[i] >= before[i] + d[i] - 1e-3, ("seed %d: %d woke early"):format(seed, i))
      end
      for i = 1, n do
        for j = 1, n do
          if i < j and d[i] == d[j] then
            -- same pause, paused earlier: deadline not later, and ties
            -- go by insertion
            assert(pos[i] < pos[j], ("seed %d: equal pauses %d, %d woke out of order"):format(seed, i, j))
            compared = compared + 1
          elseif d[i] < d[j] and after[i] + d[i] + 1e-3 < before[j] + d[j] then
            assert(pos[i] < pos[j], ("seed %d: %d (%g s) woke after %d (%g s)"):format(seed, i, d[i], j, d[j]))
            compared = compared + 1
          end
        end
      end
    end
    assert.is_true(compared > 0)
  end)
end)
