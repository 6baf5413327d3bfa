--- @include "lib/schema"
-- Records the schema and library version in a new queue's meta hash, on its first write.
local function init_meta(meta_key, lib_version)
  redis.call('HSET', meta_key, 'schema', SCHEMA_VERSION, 'lib_version', lib_version)
end
