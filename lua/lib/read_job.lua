--- @include "lib/record"
--- @include "lib/bad_record"
--- @include "lib/wrong_type"
-- Reads and parses one job record without letting a hostile key abort the script half-way.
-- Returns the parsed record and its stored string; nil when there is no such job; or nil, nil
-- and an error reply when the jobs hash has another type or the record does not parse.
local function read_job(jobs_key, id)
  local s = redis.pcall('HGET', jobs_key, id)
  if type(s) == 'table' then
    return nil, nil, wrong_type(jobs_key, s)
  end
  if not s then
    return nil
  end
  local t = rec_parse(s)
  if not t then
    return nil, nil, bad_record(jobs_key, id)
  end
  return t, s
end
