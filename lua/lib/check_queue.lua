--- @include "lib/status"
--- @include "lib/schema"
--- @include "lib/key_types"
-- Validates the queue-level keys of a script and the schema version recorded in the queue's meta
-- hash, before anything is written. Returns an error reply to hand straight back, or nil.
-- `types` is the flat key/type list for key_types; the meta hash must be its first key.
-- On success the second result tells whether the queue is new (no schema recorded yet).
local function check_queue(types)
  local bad_key, bad_type = key_types(types)
  if bad_key then
    return {STATUS.WRONG_TYPE, bad_key, bad_type}
  end
  local found = redis.call('HGET', types[1], 'schema')
  if found and found ~= SCHEMA_VERSION then
    return {STATUS.SCHEMA_MISMATCH, found, SCHEMA_VERSION}
  end
  return nil, not found
end
