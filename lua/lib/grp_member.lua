local function grp_member(g, prio, seq, id)
  return g .. '\0' .. string.format('%016.0f', (1000 - tonumber(prio)) * 4398046511104
    + tonumber(seq)) .. id
end
