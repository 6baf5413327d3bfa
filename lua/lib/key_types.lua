-- Checks the type of each key before anything is written (Redis does not roll back a script
-- that fails half-way). `spec` is a flat list: key, expected type, key, expected type, ...
-- A missing key is always accepted. Returns the first offending key and its type, or nil.
local function key_types(spec)
  for i = 1, #spec, 2 do
    local t = redis.call('TYPE', spec[i])
    if type(t) == 'table' then
      t = t['ok']
    end
    if t ~= 'none' and t ~= spec[i + 1] then
      return spec[i], t
    end
  end
  return nil
end
