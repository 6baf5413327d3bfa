--- @include "lib/status"
--- @include "lib/schema"
--- @include "lib/wrong_type"
-- Reads fields of a queue's meta hash, schema first, refusing a key of another type or a queue
-- written with another schema version. This read is also the type check of the meta hash.
-- Returns the values (schema, then the fields asked for), or nil and an error reply.
local function read_meta(meta_key, ...)
  local m = redis.pcall('HMGET', meta_key, 'schema', ...)
  if m['err'] then
    return nil, wrong_type(meta_key, m)
  end
  if m[1] and m[1] ~= SCHEMA_VERSION then
    return nil, {STATUS.SCHEMA_MISMATCH, m[1], SCHEMA_VERSION}
  end
  return m
end
