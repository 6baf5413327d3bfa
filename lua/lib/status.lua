-- Status codes: the first element of every script reply. Mirrored by redisq/_core/status.py
-- (ScriptStatus); tests/unit/test_contracts.py checks that the two agree.
local STATUS = {
  OK = 0,
  NOT_FOUND = 1,
  LEASE_LOST = 2,
  LEASE_EXPIRED = 3,
  INVALID_STATE = 4,
  SCHEMA_MISMATCH = 5,
  WRONG_TYPE = 6,
  BAD_ARGUMENT = 7,
  PAUSED = 8,
  BAD_RECORD = 9,
}
