--- @include "lib/wrong_type"
-- Reads the stored records of `ids` with one HMGET per 1,000 ids. The read is also the type
-- check of the jobs hash: a key of another type is refused (pcall), never a half-way abort.
-- Returns a list aligned with ids (the record string, or false when there is none), or nil and
-- an error reply.
local function read_jobs(jobs_key, ids)
  local out = {}
  for i = 1, #ids, 1000 do
    local r = redis.pcall('HMGET', jobs_key, unpack(ids, i, math.min(i + 999, #ids)))
    if r['err'] then
      return nil, wrong_type(jobs_key, r)
    end
    for k = 1, #r do
      out[#out + 1] = r[k]
    end
  end
  return out
end
