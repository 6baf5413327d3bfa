-- Finds where each field of a stored record (layout 2, see lib/record) starts, without copying
-- any of them: position captures are plain numbers, while rec_parse makes 20 strings. The hot
-- transitions (claim, ack) read the few fields they need with string.sub and splice the new
-- record from the old one's untouched stretches. p[i] is where field i starts (F numbering);
-- field i ends at p[i + 1] - 2, before its newline; the blob tail runs from p[F.TAIL] to the end.
-- Returns nil when the record does not parse, exactly when rec_parse would.
local REC_POS = '^j2\n()%l+\n()%-?%d+\n()%d+\n()%d+\n()%d+\n()%d+\n()%d+\n()%d*\n()[^\n]*\n'
  .. '()%d*\n()%d*\n()%d*\n()%d*\n()[^\n]*\n()[^\n]*\n()[^\n]*\n()%d+\n()%d+\n()%d+\n()'
local function rec_pos(s)
  local p = {string.match(s, REC_POS)}
  if not p[1] then
    return nil
  end
  local sub = string.sub
  local blobs = tonumber(sub(s, p[17], p[18] - 2)) + tonumber(sub(s, p[18], p[19] - 2))
    + tonumber(sub(s, p[19], p[20] - 2))
  if blobs > #s - p[20] + 1 then
    return nil
  end
  return p
end

-- The text of field i of a record whose positions are p.
local function rec_field(s, p, i)
  return string.sub(s, p[i], p[i + 1] - 2)
end
