--- @include "lib/record"
-- The head of a record (lib/record) as ack reads it: state, the position of attempts, token,
-- deadline, the position of finished, ended, the position of lease_ms, and ukey. Ack rewrites
-- state, finished and ended by splicing the rest; a record whose head does not match is
-- refused (BAD_RECORD) before anything is written (see lib/claim_head).
local ACK_HEAD = '^j3\n(%l+)\n()%d+\n(%d*)\n[^\n]*\n%d*\n(%d*)\n()%d*\n([^\n]*)\n()%d*\n'
  .. '([^\n]*)\n'
