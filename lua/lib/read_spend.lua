--- @include "lib/budget"
--- @include "lib/wrong_type"
-- Reads the records of ids[1], ids[2], ... in order until the call's byte budget (lib/budget)
-- is spent, in chunks of budget.step ids (one HMGET each). Returns the records read, aligned
-- with ids[1..#recs] (false where an id has no record): the caller handles exactly those ids
-- and leaves the rest for a later call. With `one`, at least one id is read even when the
-- budget is already spent. The read is also the type check of the jobs hash: a key of another
-- type is refused (pcall), never a half-way abort. Returns nil and an error reply then.
local function read_spend(jobs_key, ids, spend, one)
  local out = {}
  local n = #ids
  local i = 1
  while i <= n and (spend.left > 0 or (one and i == 1)) do
    local j = math.min(n, i + spend.step - 1)
    local r = redis.pcall('HMGET', jobs_key, unpack(ids, i, j))
    if r['err'] then
      return nil, wrong_type(jobs_key, r)
    end
    for k = 1, #r do
      local rec = r[k]
      out[i + k - 1] = rec
      if rec then
        spend.left = spend.left - #rec
        if spend.left <= 0 then
          return out
        end
      end
    end
    i = j + 1
  end
  return out
end
