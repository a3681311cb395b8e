-- socket.protect / socket.newtry / socket.try replacements (API.md section 0)
local helpers = require "spec.helpers"
local socket = require "socket"

local copas

-- runs fn in a copas thread; returns a table with everything it returned
local function in_thread(fn)
  local res
  copas.addthread(function()
    local function pack(...) return { n = select("#", ...), ... } end
    res = pack(fn())
  end)
  helpers.run(nil, 5)
  assert(res, "the thread did not finish")
  return res
end

describe("copas' socket.protect/newtry/try", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("return nil, message for a try failure raised after a pause", function()
    local res = in_thread(function()
      local f = socket.protect(function(x)
        local try = socket.newtry()
        copas.pause(0.01)
        local v = try(x, "ignored")
        copas.pause(0)
        try(nil, "failed after " .. v)
        return "not reached"
      end)
      return f("pause")
    end)
    assert.equal(2, res.n)
    assert.is_nil(res[1])
    assert.equal("failed after pause", res[2])
  end)

  it("return the function's results when nothing fails, across pauses", function()
    local res = in_thread(function()
      local f = socket.protect(function(a, b)
        copas.pause(0.01)
        return a, nil, b
      end)
      return f(1, 2)
    end)
    assert.equal(3, res.n)
    assert.same({ 1, nil, 2 }, { res[1], res[2], res[3] })
  end)

  it("try returns all its arguments on success", function()
    assert.same({ 1, 2, 3 }, { socket.try(1, 2, 3) })
  end)

  it("try fails on false as well as nil", function()
    local f = socket.protect(function() socket.try(false, "false failed") end)
    assert.same({ nil, "false failed" }, { f() })
  end)

  it("newtry calls the finalizer before failing", function()
    local finalized = 0
    local res = in_thread(function()
      local try = socket.newtry(function() finalized = finalized + 1 end)
      local f = socket.protect(function()
        copas.pause(0)
        try(nil, "closing")
      end)
      return f()
    end)
    assert.equal(1, finalized)
    assert.same({ nil, "closing" }, { res[1], res[2] })
  end)

  it("try raises an error object with the Copas tostring form", function()
    local ok, err = pcall(socket.try, nil, "some message")
    assert.is_false(ok)
    assert.equal("table", type(err))
    assert.equal("Copas 'try' error intermediate table: 'some message'", tostring(err))
  end)

  it("re-raises other errors unchanged", function()
    local obj = { code = 7 }
    local f = socket.protect(function() error(obj) end)
    local ok, err = pcall(f)
    assert.is_false(ok)
    assert.equal(obj, err)

    local g = socket.protect(function() error("plain message", 0) end)
    ok, err = pcall(g)
    assert.is_false(ok)
    assert.equal("plain message", err)
  end)

  it("re-raises other errors unchanged after a pause, inside a thread", function()
    local obj = { code = 8 }
    local got, after = nil, false
    copas.addthread(function()
      -- the error reaches the thread's handler (a plain pcall around a
      -- yielding function cannot work on Lua 5.1)
      copas.seterrorhandler(function(err) got = err end)
      local f = socket.protect(function()
        copas.pause(0.01)
        error(obj)
      end)
      f()
      after = true
    end)
    helpers.run(nil, 5)
    assert.equal(obj, got)
    assert.is_false(after)
  end)

  it("nest: an inner protect catches its own try failure", function()
    local res = in_thread(function()
      local outer = socket.protect(function()
        local inner = socket.protect(function()
          copas.pause(0)
          socket.try(nil, "inner")
        end)
        local a, b = inner()
        copas.pause(0)
        return a, b, "outer continued"
      end)
      return outer()
    end)
    assert.same({ nil, "inner", "outer continued" }, { res[1], res[2], res[3] })
  end)
end)
