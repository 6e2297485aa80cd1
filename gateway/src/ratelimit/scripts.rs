//! The Lua scripts the shared limiter runs in Redis, each one atomic: leasing a block of a
//! scope's minute (`grant = max(need, floor((limit - used) / divisor))`, nothing when the need
//! does not fit), and taking a concurrency slot in a sorted set whose members expire.

/// Leases a block of one scope's window: KEYS = requests key, tokens key; ARGV = rpm, tpm,
/// requests needed, tokens needed, divisor, ttl ms. Returns {granted requests, granted tokens,
/// used requests, used tokens} (after the grant), or {-1, 0, used, 0} / {0, -1, 0, used} when
/// requests / tokens do not fit.
pub(super) const LEASE: &str = r#"
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local need_r, need_t = tonumber(ARGV[3]), tonumber(ARGV[4])
local div, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local used_r = tonumber(redis.call('GET', KEYS[1]) or '0')
local used_t = tonumber(redis.call('GET', KEYS[2]) or '0')
if rpm > 0 and rpm - used_r < need_r then return {-1, 0, used_r, 0} end
if tpm > 0 and tpm - used_t < need_t then return {0, -1, 0, used_t} end
local grant_r, grant_t = 0, 0
if rpm > 0 then
  grant_r = math.max(need_r, math.floor((rpm - used_r) / div))
  used_r = redis.call('INCRBY', KEYS[1], grant_r)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if tpm > 0 then
  grant_t = math.max(need_t, math.floor((tpm - used_t) / div))
  used_t = redis.call('INCRBY', KEYS[2], grant_t)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {grant_r, grant_t, used_r, used_t}
"#;

/// Takes a concurrency slot: KEYS = the scope's set; ARGV = limit, now ms, expiry ms, member,
/// ttl ms. 1 taken, 0 full.
pub(super) const SLOT: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"#;
