-- thread and socket names (API.md section 4)
local helpers = require "spec.helpers"
local socket = require "socket"

local copas

describe("thread names", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("default to tostring(co)", function()
    local inside, co
    co = copas.addthread(function() inside = copas.getthreadname() end)
    assert.equal(tostring(co), copas.getthreadname(co))
    copas.loop()
    assert.equal(tostring(co), inside)
  end)

  it("getthreadname() names the running coroutine, also outside copas", function()
    local co = coroutine.create(function() return copas.getthreadname() end)
    local _, name = coroutine.resume(co)
    assert.equal(tostring(co), name)
  end)

  it("setthreadname(name) names the calling thread", function()
    local co, inside
    co = copas.addthread(function()
      copas.setthreadname("self-named")
      inside = copas.getthreadname()
    end)
    copas.loop()
    assert.equal("self-named", inside)
    assert.equal("self-named", copas.getthreadname(co))
  end)

  it("setthreadname(name, co) names another coroutine", function()
    local co = copas.addthread(function() end)
    copas.setthreadname("other", co)
    assert.equal("other", copas.getthreadname(co))
    local foreign = coroutine.create(function() end)
    copas.setthreadname("foreign", foreign)
    assert.equal("foreign", copas.getthreadname(foreign))
    copas.loop()
  end)

  it("can be renamed", function()
    local co = copas.addnamedthread("first", function() end)
    copas.setthreadname("second", co)
    assert.equal("second", copas.getthreadname(co))
    copas.loop()
  end)

  it("setthreadname raises 'expected arg #1 to be a string' for a non-string", function()
    for _, bad in ipairs { 42, {}, true } do
      local ok, err = pcall(copas.setthreadname, bad, coroutine.create(function() end))
      assert.is_false(ok)
      assert.matches("expected arg #1 to be a string", err, 1, true)
    end
    local ok, err = pcall(copas.setthreadname, nil, coroutine.create(function() end))
    assert.is_false(ok)
    assert.matches("expected arg #1 to be a string", err, 1, true)
  end)

  it("are held weakly", function()
    local weak = setmetatable({}, { __mode = "k" })
    do
      local co = coroutine.create(function() end)
      copas.setthreadname("transient", co)
      weak[co] = true
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
  end)

  it("uses the generated names copas_initializer and copas_core_timer", function()
    local init_name, timer_name
    copas.loop(function()
      init_name = copas.getthreadname()
      copas.timeout(0.01, function(co)
        timer_name = copas.getthreadname()
        copas.wakeup(co)
      end)
      copas.pauseforever()
    end)
    assert.equal("copas_initializer", init_name)
    assert.equal("copas_core_timer", timer_name)
  end)
end)


describe("socket names", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("default to tostring(skt) and can be set", function()
    local s = socket.tcp()
    assert.equal(tostring(s), copas.getsocketname(s))
    copas.setsocketname("mine", s)
    assert.equal("mine", copas.getsocketname(s))
    s:close()
  end)

  it("a wrapper names its underlying socket", function()
    local s = socket.tcp()
    local w = copas.wrap(s)
    copas.setsocketname("through wrapper", w)
    assert.equal("through wrapper", copas.getsocketname(s))
    assert.equal("through wrapper", copas.getsocketname(w))
    s:close()
  end)

  it("raise for a missing socket", function()
    local ok, err = pcall(copas.setsocketname, "name", nil)
    assert.is_false(ok)
    assert.matches("expected arg #2 to be a socket", err, 1, true)
    ok, err = pcall(copas.getsocketname, nil)
    assert.is_false(ok)
    assert.matches("expected arg #1 to be a socket", err, 1, true)
  end)

  it("setsocketname raises 'expected arg #1 to be a string' for a non-string", function()
    local s = socket.tcp()
    local ok, err = pcall(copas.setsocketname, 12, s)
    assert.is_false(ok)
    assert.matches("expected arg #1 to be a string", err, 1, true)
    s:close()
  end)
end)
