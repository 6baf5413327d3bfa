--- @include "lib/caps"
--- @include "lib/wrong_type"
-- Reads the stored records of the first ids of `ids` that fit in `bytes_left` bytes (always the
-- first one, whatever its size), at most CAPS.READ_GROUP ids per HMGET (fewer when the records
-- seen are large), so that a call never copies more than its budget plus one group of records,
-- however large the records are. A missing record counts 0 bytes. The read is also the type
-- check of the jobs hash (pcall).
-- Returns the records of the ids covered (aligned with ids; false where there is none), how
-- many ids they cover, and the bytes read for them; or nil and an error reply.
local function read_some(jobs_key, ids, bytes_left)
  local out = {}
  local used = 0
  local largest = 0
  local n = #ids
  local i = 1
  while i <= n do
    -- Two records first; then as many as the bytes_left left holds at the largest size seen
    -- (READ_GROUP while every record so far was missing: new ids, as enqueue mostly reads).
    local group = 2
    if largest == 0 and i > 1 then
      group = CAPS.READ_GROUP
    elseif largest > 0 then
      group = math.max(1, math.min(CAPS.READ_GROUP, math.floor((bytes_left - used) / largest)))
    end
    local j = math.min(i + group - 1, n)
    local r = redis.pcall('HMGET', jobs_key, unpack(ids, i, j))
    if r['err'] then
      return nil, wrong_type(jobs_key, r)
    end
    for k = 1, #r do
      local size = r[k] and #r[k] or 0
      if i + k > 2 and used + size > bytes_left then
        return out, i + k - 2, used
      end
      used = used + size
      if size > largest then
        largest = size
      end
      out[i + k - 1] = r[k]
    end
    i = j + 1
  end
  return out, n, used
end
