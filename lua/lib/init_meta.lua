--- @include "lib/schema"
-- Records the schema and library version in a queue's meta hash on the queue's first write.
local function init_meta(meta_key, lib_version)
  if redis.call('HEXISTS', meta_key, 'schema') == 0 then
    redis.call('HSET', meta_key, 'schema', SCHEMA_VERSION, 'lib_version', lib_version)
  end
end
