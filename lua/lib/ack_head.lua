-- The head of a record (lib/record) as ack reads it: state, the position of attempts, token,
-- deadline, the position of finished, ended, the position of lease_ms, ukey, and the position
-- of prio (after ukey). Ack rewrites state, finished and ended by splicing the rest; a record
-- whose head does not match is refused (BAD_RECORD) before anything is written (see
-- lib/claim_head).
local ACK_HEAD = '^j3\n(%l+)\n()%d+\n(%d*)\n[^\n]*\n%d*\n(%d*)\n()%d*\n([^\n]*)\n()%d*\n'
  .. '([^\n]*)\n()'
-- The rest of the text fields, from prio: the position of the blob lengths, the lengths of
-- error, result and progress, and the position of the blobs. Ack with a result splices it in.
local ACK_TAIL = '^%-?%d+\n%d+\n%d+\n%d+\n%d+\n[^\n]*\n()(%d+)\n(%d+)\n(%d+)\n()'
