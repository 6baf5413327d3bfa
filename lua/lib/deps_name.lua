-- Names a parent ref in texts (a cancelled child's error, its ended field): a parent of the
-- same queue is its id; one of another queue ('<queue>\t<id>') is '<id> (queue <queue>)'.
local function deps_name(ref)
  local queue, id = string.match(ref, '^([^\t]+)\t(.+)$')
  if queue then
    return id .. ' (queue ' .. queue .. ')'
  end
  return ref
end
