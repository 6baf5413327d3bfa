-- Reads fields of a job record without letting a hostile key abort the script half-way.
-- Returns the HMGET values; nil when the record is missing (its first field, which callers make
-- 'state', is absent); or nil and the key when the key holds something other than a hash.
local function read_job(key, ...)
  local r = redis.pcall('HMGET', key, ...)
  if type(r) ~= 'table' or r['err'] then
    return nil, key
  end
  if not r[1] then
    return nil
  end
  return r
end
