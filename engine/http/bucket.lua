-- One host's pacing state in a Redis hash: the same budgets and rules as sharedbucket.py,
-- one atomic call per operation (engine/http/redisbucket.py runs it with EVALSHA).
--
-- KEYS[1]  the host's hash, syncengine:bucket:<host>:<port>
-- ARGV     op, process id, clock offset (s), lease (s), idle TTL (s), rate, burst, op's arguments
--
-- Time is the Redis server's (TIME) plus the offset (0 but in tests, where skipped waits
-- advance it), so machines whose clocks disagree still agree on one bucket. Fields:
--   ta ts tr tb        token bucket: available, stamp, rate, burst
--   fa fs fr fc fe fq  feedback: available, stamp, refill rate, capacity, window end, quota
--   fh fw              hold until, windows ended so far
--   u:<process> e:<process>   units a process has in flight, and until when it is alive
-- A field that is absent is unknown (NaN in sharedbucket.py). Numbers go back as strings:
-- Redis would truncate a Lua number to an integer.

local key, op, proc = KEYS[1], ARGV[1], ARGV[2]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6 + tonumber(ARGV[3])
local lease, idle = tonumber(ARGV[4]), tonumber(ARGV[5])
local rate, burst = tonumber(ARGV[6]), tonumber(ARGV[7])
local NAN, STALE, POLL = 0 / 0, 60.0, 0.05
local NAMES = {'ta', 'ts', 'tr', 'tb', 'fa', 'fs', 'fr', 'fc', 'fe', 'fq', 'fh', 'fw'}

local s, flight = {}, {}
local raw = redis.call('HGETALL', key)
for i = 1, #raw, 2 do
  local tag, id = string.match(raw[i], '^([ue]):(.+)$')
  if tag then
    flight[id] = flight[id] or {0, 0}
    flight[id][tag == 'u' and 1 or 2] = tonumber(raw[i + 1])
  else
    s[raw[i]] = tonumber(raw[i + 1])
  end
end
local missing = s.tr == nil
for _, name in ipairs(NAMES) do
  if s[name] == nil then s[name] = NAN end
end

local function known(x) return x == x end

local function in_flight()
  local total = 0
  for _, f in pairs(flight) do
    if f[1] > 0 and f[2] >= now then total = total + f[1] end
  end
  return total
end

local function add_in_flight(units)
  local f = flight[proc] or {0, 0}
  f[1], f[2] = math.max(0, f[1] + units), now + lease
  flight[proc] = f
end

local function tighten(r, b)
  if r > 0 and (s.tr <= 0 or r < s.tr) then s.tr = r end
  if r > 0 then
    s.tb = (s.tb > 0) and math.min(s.tb, b) or b
    s.ta = math.min(s.ta, s.tb)
  end
end

local function fresh(keep_feedback)
  s.ta, s.ts, s.tr, s.tb = burst, now, rate, burst
  if not keep_feedback then
    s.fa, s.fs, s.fr, s.fc, s.fe, s.fq, s.fh, s.fw = NAN, 0, 0, NAN, NAN, NAN, 0, 0
  end
end

local function refill()
  if s.tr > 0 then s.ta = math.min(s.tb, s.ta + (now - s.ts) * s.tr) end
  s.ts = now
  if not known(s.fa) then return end
  if s.fr > 0 then
    local top = known(s.fc) and s.fc or math.huge
    s.fa = math.min(top, s.fa + (now - s.fs) * s.fr)
  end
  if known(s.fe) and now >= s.fe then
    -- requests still in flight may land in the new window: they count against its quota
    s.fa = (known(s.fq) and s.fq or 1.0) - in_flight()
    s.fw, s.fe = s.fw + 1, NAN
  end
  s.fs = now
end

local function token_wait()
  if s.tr <= 0 or s.ta >= 1 then return 0 end
  return (1 - s.ta) / s.tr
end

local function feedback_wait(cost)
  local available = s.fa
  if not known(available) then
    return (cost > 0 and in_flight() > 0) and POLL or 0
  end
  if available >= cost then return 0 end
  if known(s.fe) then return s.fe - now end
  if s.fr > 0 then return (cost - available) / s.fr end
  if s.fw > 0 and in_flight() > 0 then return POLL end
  return 0
end

local function num(x) return string.format('%.17g', x) end

local result = {}
if missing then fresh(false) end
if op == 'init' and not missing then
  if not (now - STALE < s.ts and s.ts <= now) then       -- idle, or another boot's
    fresh(known(s.fh) and s.fs <= now)
  else
    tighten(rate, burst)
  end
elseif op == 'tighten' then
  tighten(tonumber(ARGV[8]), tonumber(ARGV[9]))
elseif op == 'take' then
  local cost = tonumber(ARGV[8])
  refill()
  local wait = math.max(s.fh - now, token_wait(), feedback_wait(cost))
  if wait > 0 then
    result = {num(wait), num(s.fw)}
  else
    if s.tr > 0 then s.ta = s.ta - 1 end
    if known(s.fa) then s.fa = s.fa - cost end
    add_in_flight(cost)
    result = {'0', num(s.fw)}
  end
elseif op == 'settle' then
  local cost, ticket = tonumber(ARGV[8]), tonumber(ARGV[9])
  local available, capacity, frate = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
  local reset, refund = tonumber(ARGV[13]), tonumber(ARGV[14])
  refill()
  add_in_flight(-cost)
  if not (reset and ticket < s.fw) then                   -- else a late answer from an ended window
    if capacity then s.fc, s.fq = capacity, capacity end
    if frate then s.fr = frate end
    if reset then
      local ends = now + math.max(0, reset)
      s.fe = known(s.fe) and math.min(s.fe, ends) or ends
    end
    if available then
      local left = available - in_flight()
      s.fa = known(s.fa) and math.min(s.fa + refund, left) or left
      s.fs = now
    end
  end
elseif op == 'hold' then
  s.fh = math.max(s.fh, now + tonumber(ARGV[8]))
elseif op == 'release' then
  add_in_flight(-tonumber(ARGV[8]))
elseif op == 'touch' then
  add_in_flight(0)
elseif op == 'read' then
  for i, name in ipairs(NAMES) do result[i] = num(s[name]) end
  result[#NAMES + 1] = num(in_flight())
end

local stored, gone = {}, {}
for _, name in ipairs(NAMES) do
  if known(s[name]) then
    stored[#stored + 1], stored[#stored + 2] = name, num(s[name])
  else
    gone[#gone + 1] = name
  end
end
for id, f in pairs(flight) do
  if f[1] > 0 and f[2] >= now then                        -- a live process with units out
    stored[#stored + 1], stored[#stored + 2] = 'u:' .. id, num(f[1])
    stored[#stored + 1], stored[#stored + 2] = 'e:' .. id, num(f[2])
  else                                                    -- settled, or its process died
    gone[#gone + 1], gone[#gone + 2] = 'u:' .. id, 'e:' .. id
  end
end
redis.call('HSET', key, unpack(stored))
if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
-- an idle host's state vanishes, but not before its hold or its window ends
local keep = idle + math.max(0, s.fh - now, known(s.fe) and s.fe - now or 0)
redis.call('PEXPIRE', key, math.ceil(keep * 1000))
return result
