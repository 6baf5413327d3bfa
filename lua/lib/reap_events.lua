--- @include "lib/events"
-- The events of reaped jobs (lib/events; keys.meta, keys.events, keys.wait): lease-lost (the
-- holder's lease ended), then reaped (back to ready) or dead. The meta hash is read only when
-- a lease expired.
local function reap_events(keys, now, writes)
  local m = events(keys.meta, keys.events, keys.wait, nil, now, 'lease-lost', writes)
  if m[1] or m[2] then
    local back, gone = {}, {}
    for i = 1, #writes, 2 do
      local l = string.sub(writes[i + 1], 1, 7) == 'j3\ndead' and gone or back
      l[#l + 1] = writes[i]
      l[#l + 1] = writes[i + 1]
    end
    events(keys.meta, keys.events, keys.wait, m, now, 'reaped', back)
    events(keys.meta, keys.events, keys.wait, m, now, 'dead', gone)
  end
end
