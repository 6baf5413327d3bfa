--[[ purge: any -> (deleted)
  Deletes up to `limit` jobs of one state (or of every state, ready first) with their index
  entries, unique keys and stored results (those of records already trimmed expire on their
  own). Bounded (lib/caps): `limit` is at most CAPS.BATCH, and once the records read (for their
  unique keys) pass CAPS.READ_BYTES the call stops there (`more` = 1). The client calls it again
  until it reports fewer than `limit` and no `more`. The waiting children of purged jobs are
  settled by the next reap (lib/deps_drain: a parent gone counts as 'deleted').
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids
  KEYS[3] scheduled   zset   job ids
  KEYS[4] leased      zset   job ids
  KEYS[5] done        zset   job ids
  KEYS[6] dead        zset   job ids
  KEYS[7] cancelled   zset   job ids
  KEYS[8] unique      hash   unique key -> job id
  KEYS[9] jobs        hash   job id -> packed job record (lib/record)
  KEYS[10] result_prefix prefix stored results are result_prefix .. <id> (strings with a TTL)
  KEYS[11] gready     zset   grouped ready jobs (lib/groups)
  KEYS[12] gturn      zset   group -> turn, the groups that may lease now
  KEYS[13] gleased    zset   leased grouped jobs, member <group> \0 <id>
  KEYS[14] gjob       hash   job id -> group
  KEYS[15] waiting    zset   job ids waiting for parents
  KEYS[16] deps_prefix prefix dependency keys (lib/deps_keys): a purged waiting job's list
  ARGV[1] state       str    ready, scheduled, leased, completed, dead, cancelled, waiting;
                             '' = all
  ARGV[2] limit       int    most jobs deleted in this call (1 to CAPS.BATCH)
  Returns: {status, number deleted, more (1 = stopped for the read budget)}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(limit log N), limit <= CAPS.BATCH; bytes bounded by lib/caps
]]
--- @include "lib/status"
--- @include "lib/check_queue"
--- @include "lib/clear_unique"
--- @include "lib/chunks"
--- @include "lib/caps"
--- @include "lib/read_some"
--- @include "lib/grp_ctx"
--- @include "lib/attempt_fields"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local done_key = KEYS[5]
local dead_key = KEYS[6]
local cancelled_key = KEYS[7]
local unique_key = KEYS[8]
local jobs_key = KEYS[9]
local result_prefix = KEYS[10]
local gready_key = KEYS[11]
local gturn_key = KEYS[12]
local gleased_key = KEYS[13]
local gjob_key = KEYS[14]
local waiting_key = KEYS[15]
local deps_prefix = KEYS[16]
local state = ARGV[1]
local limit = tonumber(ARGV[2])

local by_state = {ready = ready_key, scheduled = scheduled_key, leased = leased_key,
  completed = done_key, dead = dead_key, cancelled = cancelled_key, waiting = waiting_key}
local order = {'ready', 'gready', 'scheduled', 'leased', 'completed', 'dead', 'cancelled',
  'waiting'}
if not limit or limit < 1 or limit > CAPS.BATCH or (state ~= '' and not by_state[state]) then
  return {STATUS.BAD_ARGUMENT, 'purge'}
end
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  leased_key, 'zset', done_key, 'zset', dead_key, 'zset', cancelled_key, 'zset',
  unique_key, 'hash', jobs_key, 'hash', waiting_key, 'zset'})
if err then
  return err
end
local sets = order
if state == 'ready' then
  sets = {'ready', 'gready'}  -- ready jobs of groups (lib/groups) too
elseif state ~= '' then
  sets = {state}
end
by_state.gready = gready_key
local gctx = grp_ctx(meta_key, gready_key, gturn_key, gleased_key, gjob_key)
-- The unique key is the 10th text field of a record (lib/record); a record that does not
-- parse is deleted all the same.
local UKEY = '^j3\n' .. string.rep('[^\n]*\n', 9) .. '([^\n]*)\n'
local removed = 0
local used = 0
local more = 0
for i = 1, #sets do
  if removed >= limit or more == 1 then
    break
  end
  local set_key = by_state[sets[i]]
  local ids = redis.call('ZRANGE', set_key, 0, limit - removed - 1)
  local members = ids
  if set_key == gready_key then
    members, ids = ids, {}
    for j = 1, #members do
      ids[j] = string.sub(members[j], string.find(members[j], '\0', 1, true) + 17)
    end
  end
  if #ids > 0 then
    -- The first record of the call is always read; after it, the budget decides.
    local recs, covered, bytes = read_some(jobs_key, ids, CAPS.READ_BYTES - used)
    if not recs then
      return covered
    end
    if removed > 0 and covered == 1 and bytes > CAPS.READ_BYTES - used then
      covered = 0
    end
    if covered < #ids then
      more = 1
      ids = {unpack(ids, 1, covered)}
      members = {unpack(members, 1, covered)}
    end
    -- Grouped jobs leave their groups: their lease slots and group entries.
    local groups = gctx and gctx.of(ids)
    for j = 1, groups and #ids or 0 do
      if groups[j] then
        gctx.unlease(groups[j], ids[j])
      end
    end
    if groups then
      chunks({'HDEL', gjob_key}, ids)
    end
    used = used + bytes
    local uniques = {}
    local results = {}
    for j = 1, #ids do
      results[j] = result_prefix .. ids[j]
      local ukey = recs[j] and string.match(recs[j], UKEY)
      if ukey and ukey ~= '' then
        uniques[#uniques + 1] = ukey
        uniques[#uniques + 1] = ids[j]
      end
    end
    clear_unique(unique_key, uniques)
    chunks({'HDEL', jobs_key}, attempt_fields(ids, recs))
    chunks({'ZREM', set_key}, members)
    chunks({'DEL'}, results)
    if set_key == waiting_key then
      chunks({'HDEL', deps_prefix .. 'pending'}, ids)
    end
  end
  removed = removed + #ids
end
return {STATUS.OK, removed, more}
