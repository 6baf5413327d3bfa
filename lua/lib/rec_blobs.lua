--- @include "lib/record"
-- Splits and rebuilds the blob tail of a parsed record: error, result, progress, payload.
local function rec_blobs(t)
  local tail = t[F.TAIL]
  local e = tonumber(t[F.LEN_ERROR])
  local r = e + tonumber(t[F.LEN_RESULT])
  local p = r + tonumber(t[F.LEN_PROGRESS])
  return string.sub(tail, 1, e), string.sub(tail, e + 1, r), string.sub(tail, r + 1, p),
    string.sub(tail, p + 1)
end

local function rec_set_blobs(t, err, result, progress, payload)
  t[F.LEN_ERROR] = tostring(#err)
  t[F.LEN_RESULT] = tostring(#result)
  t[F.LEN_PROGRESS] = tostring(#progress)
  t[F.TAIL] = err .. result .. progress .. payload
end
