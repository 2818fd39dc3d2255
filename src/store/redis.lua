-- authward's store operations on one Redis key, each atomic (one script run).
-- KEYS[1]: the key. ARGV[1]: the operation; ARGV[2]: now, in milliseconds of authward's clock; the rest by
-- operation. Expiry is kept with the data in authward's clock (so every replica and the tests' injected
-- clock agree on it), and mirrored in a Redis TTL with a second of slack so that Redis frees what expired.
--
-- Layout of a key by kind:
--   rate limit, counter, value: a hash {t = 'r' | 'c' | 'v', v = the TAT in µs | the count | the bytes,
--                               x = expiry in ms (absent: never)}
--   set:  a sorted set; member 'x' scored with the expiry, 'n' with the number of adds so far, and
--         members 'm' .. fingerprint with the number of their last add (the least recently added goes
--         first when the set is full; add numbers, unlike clocks, never tie and never skew)
--   list: a list, newest first; its last item is 'x' .. expiry in ms, or 'x' for never
local k = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])

-- Lua numbers are doubles and redis.call formats them with 14 digits: integers are passed as text.
local function int(n)
  return string.format('%.0f', n)
end

-- The live key's kind ('r', 'c', 'v', 's', 'l', or 'other' for a key authward did not write) and its
-- expiry (text, or false for never); nil when absent. An expired key is deleted here.
local function live()
  local ty = redis.call('TYPE', k)['ok']
  if ty == 'none' then
    return nil
  end
  local kind, x
  if ty == 'hash' then
    local f = redis.call('HMGET', k, 't', 'x')
    kind, x = f[1], f[2]
    if not kind then
      return 'other', false
    end
  elseif ty == 'zset' then
    kind, x = 's', redis.call('ZSCORE', k, 'x')
  elseif ty == 'list' then
    kind, x = 'l', string.sub(redis.call('LINDEX', k, -1), 2)
    if x == '' then
      x = false
    end
  else
    return 'other', false
  end
  if x and tonumber(x) <= now then
    redis.call('DEL', k)
    return nil
  end
  return kind, x
end

local function expire(x)
  if x then
    redis.call('PEXPIRE', k, int(math.max(tonumber(x) - now, 0) + 1000))
  else
    redis.call('PERSIST', k)
  end
end

-- GCRA in microseconds: ARGV[3] emission interval, ARGV[4] burst tolerance, ARGV[5] limit, ARGV[6] cost.
-- Returns {allowed, remaining, retry_after µs (-1: never fits), reset_after µs}.
local function gcra(kind, take)
  local t, tol, limit, cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local tat = 0
  if kind then
    tat = tonumber(redis.call('HGET', k, 'v'))
  end
  local nowu = now * 1000
  local function remaining(at)
    return math.max(math.floor((nowu + tol - at) / t), 0)
  end
  local base = math.max(tat, nowu)
  local new_tat = base + t * cost
  local allow_at = new_tat - tol
  local fits = cost <= limit
  local allowed = fits and nowu >= allow_at
  if allowed and take then
    local x = math.ceil(new_tat / 1000)
    redis.call('HSET', k, 't', 'r', 'v', int(new_tat), 'x', int(x))
    expire(x)
    return { 1, remaining(new_tat), 0, new_tat - nowu }
  end
  local retry = 0
  if not fits then
    retry = -1
  elseif not allowed then
    retry = allow_at - nowu
  end
  return { allowed and 1 or 0, remaining(base), retry, base - nowu }
end

-- The kind each operation works on and its name in type errors; put and delete take any kind.
local wants = {
  rate_take = { 'r', 'rate limit' }, rate_peek = { 'r', 'rate limit' },
  incr = { 'c', 'counter' }, counter = { 'c', 'counter' },
  set_add = { 's', 'set' }, set_len = { 's', 'set' }, set_contains = { 's', 'set' },
  get = { 'v', 'value' }, take = { 'v', 'value' },
  list_push = { 'l', 'list' }, list_range = { 'l', 'list' }, list_replace = { 'l', 'list' },
}
local kind, x = live()
local want = wants[op]
if kind and want and kind ~= want[1] then
  return redis.error_reply('AWTYPE ' .. want[2])
end

if op == 'rate_take' then
  return gcra(kind, true)
elseif op == 'rate_peek' then
  return gcra(kind, false)
elseif op == 'incr' then
  -- ARGV[3] by, ARGV[4] ttl ms. The count goes back as text: a double cannot hold every i64.
  if not kind then
    x = now + tonumber(ARGV[4])
    redis.call('HSET', k, 't', 'c', 'v', '0', 'x', int(x))
    expire(x)
  end
  local r = redis.pcall('HINCRBY', k, 'v', ARGV[3])
  if type(r) == 'table' and r.err then
    -- Overflow: saturate, as the other backends do.
    if string.sub(ARGV[3], 1, 1) == '-' then
      redis.call('HSET', k, 'v', '-9223372036854775808')
    else
      redis.call('HSET', k, 'v', '9223372036854775807')
    end
  end
  return redis.call('HGET', k, 'v')
elseif op == 'counter' then
  if not kind then
    return '0'
  end
  return redis.call('HGET', k, 'v')
elseif op == 'set_add' then
  -- ARGV[3] member fingerprint, ARGV[4] ttl ms, ARGV[5] most members.
  local m, cap = 'm' .. ARGV[3], tonumber(ARGV[5])
  local n = 0
  if kind then
    n = redis.call('ZCARD', k) - 2
  end
  if not redis.call('ZSCORE', k, m) then
    -- Rank 0 is always a member: members are scored with add numbers, below 'n' (the last one) and
    -- 'x' (an expiry in ms, far above any add number); equal scores sort 'm...' first.
    while n >= cap do
      redis.call('ZREM', k, redis.call('ZRANGE', k, 0, 0)[1])
      n = n - 1
    end
    n = n + 1
  end
  local seq = redis.call('ZINCRBY', k, 1, 'n')
  x = now + tonumber(ARGV[4])
  redis.call('ZADD', k, seq, m, int(x), 'x')
  expire(x)
  return n
elseif op == 'set_len' then
  if not kind then
    return 0
  end
  return redis.call('ZCARD', k) - 2
elseif op == 'set_contains' then
  if not kind then
    return 0
  end
  return redis.call('ZSCORE', k, 'm' .. ARGV[3]) and 1 or 0
elseif op == 'put' or op == 'put_if_absent' then
  -- ARGV[3] value, ARGV[4] ttl ms or '' for never.
  if op == 'put_if_absent' and kind then
    return 0
  end
  redis.call('DEL', k)
  if ARGV[4] == '' then
    redis.call('HSET', k, 't', 'v', 'v', ARGV[3])
  else
    x = now + tonumber(ARGV[4])
    redis.call('HSET', k, 't', 'v', 'v', ARGV[3], 'x', int(x))
    expire(x)
  end
  return 1
elseif op == 'get' or op == 'take' then
  if not kind then
    return false
  end
  local v = redis.call('HGET', k, 'v')
  if op == 'take' then
    redis.call('DEL', k)
  end
  return v
elseif op == 'delete' then
  if kind then
    redis.call('DEL', k)
    return 1
  end
  return 0
elseif op == 'list_push' then
  -- ARGV[3] value, ARGV[4] most items, ARGV[5] ttl ms or '' to leave the expiry as it is.
  local cap = tonumber(ARGV[4])
  if cap == 0 then
    redis.call('DEL', k)
    return 0
  end
  if not kind then
    redis.call('RPUSH', k, 'x')
  end
  if ARGV[5] ~= '' then
    x = now + tonumber(ARGV[5])
    redis.call('LSET', k, -1, 'x' .. int(x))
    expire(x)
  end
  redis.call('LPUSH', k, ARGV[3])
  local n = redis.call('LLEN', k) - 1
  if n > cap then
    local meta = redis.call('RPOP', k)
    redis.call('LTRIM', k, 0, cap - 1)
    redis.call('RPUSH', k, meta)
    n = cap
  end
  return n
elseif op == 'list_range' then
  -- ARGV[3] start, ARGV[4] count.
  if not kind then
    return {}
  end
  local start, count = tonumber(ARGV[3]), tonumber(ARGV[4])
  local n = redis.call('LLEN', k) - 1
  if count == 0 or start >= n then
    return {}
  end
  return redis.call('LRANGE', k, int(start), int(math.min(start + count, n) - 1))
elseif op == 'list_replace' then
  -- ARGV[3] old item, ARGV[4] new item: the newest equal item is replaced.
  if not kind then
    return 0
  end
  local at = redis.call('LPOS', k, ARGV[3])
  if at and at < redis.call('LLEN', k) - 1 then
    redis.call('LSET', k, at, ARGV[4])
    return 1
  end
  return 0
end
return redis.error_reply('ERR unknown authward store operation ' .. tostring(op))
