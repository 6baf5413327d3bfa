-- Frees a job's unique key when the job leaves the live states (completed, dead, cancelled,
-- deleted). Only the entry that still points at this job is removed.
local function clear_unique(unique_key, ukey, id)
  if ukey and ukey ~= '' and redis.call('HGET', unique_key, ukey) == id then
    redis.call('HDEL', unique_key, ukey)
  end
end
