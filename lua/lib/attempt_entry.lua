--- @include "lib/num"
--- @include "lib/record"
--- @include "lib/attempt_caps"
-- One entry of a job's attempt history, for the attempt of parsed record `t` that just ended:
-- returns the field and value to HSET into the queue's jobs hash, next to the record.
-- The field is <id> \0 'a' <slot>, slot = (attempt - 1) mod ATTEMPT_CAPS.KEEP: the write is
-- one HSET with no read, a later attempt overwrites the one KEEP attempts before it, and
-- writing an attempt's entry twice leaves one entry. Job ids hold no control characters, so
-- no job id is ever an attempt field. Only failures write entries: a job that never fails
-- has none. lib/attempt_fields names them all for removal with the record.
-- The value: 'a1' \n attempt \n token \n outcome \n cause \n worker \n at_ms \n text, where
-- outcome is the job's next step (retry, dead, cancelled), cause what ended the attempt
-- (error, lease_expired, cancelled) and text the error as the worker sent it (its summary,
-- then the traceback), cut to ATTEMPT_CAPS.TEXT_BYTES.
local function attempt_entry(id, t, outcome, cause, text, now)
  local attempt = tonumber(t[F.ATTEMPTS])
  if #text > ATTEMPT_CAPS.TEXT_BYTES then
    local cut = '\n[... ' .. (#text - ATTEMPT_CAPS.TEXT_BYTES) .. ' bytes cut ...]\n'
    local tail = ATTEMPT_CAPS.TEXT_BYTES - ATTEMPT_CAPS.HEAD_BYTES
    text = string.sub(text, 1, ATTEMPT_CAPS.HEAD_BYTES) .. cut .. string.sub(text, -tail)
  end
  return id .. '\0a' .. ((attempt - 1) % ATTEMPT_CAPS.KEEP),
    'a1\n' .. attempt .. '\n' .. t[F.TOKEN] .. '\n' .. outcome .. '\n' .. cause .. '\n'
    .. t[F.WORKER] .. '\n' .. num(now) .. '\n' .. text
end
