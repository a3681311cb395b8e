-- Spec helper: a DNS responder that is slow on purpose, run as copas
-- threads in the spec's own process.
--
-- Names under "copas.test" are answered after `delay` seconds: A queries
-- with 127.0.0.1, AAAA queries with ::1; names whose first label starts
-- with "missing" get NXDOMAIN (after the same delay). Anything else gets
-- REFUSED at once. Only the question section of a query is read, which is
-- all the C library's stub resolver sends.
--
--   local dns = require("spec.dns_server").start(copas, socket, "127.0.0.1", 53, 1.0)
--   dns.queries()   -- number of queries received
--   dns.answered()  -- number of responses sent
--   dns.stop()

local M = {}

local char, byte = string.char, string.byte

local TYPE_A, TYPE_AAAA = 1, 28
local RCODE_OK, RCODE_NXDOMAIN, RCODE_REFUSED = 0, 3, 5

local function u16(n)
  return char(math.floor(n / 256) % 256, n % 256)
end

local function get16(s, i)
  local a, b = byte(s, i, i + 1)
  return a * 256 + b
end

-- the question of a query: name (lower case, dotted), qtype, and the end
-- of the question section; nil for a malformed query
local function question(q)
  if #q < 17 or get16(q, 5) ~= 1 then return nil end
  local labels, i = {}, 13
  while true do
    local len = byte(q, i)
    if len == nil or len > 63 then return nil end
    if len == 0 then break end
    labels[#labels + 1] = q:sub(i + 1, i + len):lower()
    i = i + 1 + len
  end
  if i + 4 > #q then return nil end
  return table.concat(labels, "."), get16(q, i + 1), i + 4
end

local function answer_record(qtype)
  local rdata = qtype == TYPE_A and char(127, 0, 0, 1) or (("\0"):rep(15) .. "\1")
  return "\192\12" .. u16(qtype) .. u16(1) .. char(0, 0, 0, 60) .. u16(#rdata) .. rdata
end

-- the response to query q, and whether it is to be delayed
local function respond(q)
  local name, qtype, qend = question(q)
  if name == nil then return nil end
  local rcode, answers, delayed = RCODE_REFUSED, "", false
  if name:match("%.copas%.test$") then
    delayed = true
    if name:match("^missing") then
      rcode = RCODE_NXDOMAIN
    else
      rcode = RCODE_OK
      if qtype == TYPE_A or qtype == TYPE_AAAA then answers = answer_record(qtype) end
    end
  end
  local header = q:sub(1, 2) .. char(0x81, 0x80 + rcode) .. u16(1)
              .. u16(answers == "" and 0 or 1) .. u16(0) .. u16(0)
  return header .. q:sub(13, qend) .. answers, delayed
end

--- Starts the responder on UDP ip:port.
-- @return { queries = fn -> count, answered = fn -> count, stop = fn }
function M.start(copas, socket, ip, port, delay)
  local udp = assert(socket.udp())
  assert(udp:setsockname(ip, port))
  udp:settimeout(0)
  local count, sent, running = 0, 0, true
  copas.addnamedthread("dns_server", function()
    while running do
      local q, from, fport = copas.receivefrom(udp, 512)
      if q and running then
        count = count + 1
        local resp, delayed = respond(q)
        if resp then
          copas.addthread(function()
            if delayed then copas.pause(delay) end
            if running and pcall(udp.sendto, udp, resp, from, fport) then sent = sent + 1 end
          end)
        end
      end
    end
  end)
  return {
    queries = function() return count end,
    answered = function() return sent end,
    stop = function()
      running = false
      copas.close(udp)
    end,
  }
end

return M
