"""Online store on a standalone Redis.

Everything goes through ``RespConnection`` (one pipelined hiredis connection): redis-py's
general machinery cost ~120-140 µs of CPU per MGET and ~5 µs per written row (packing the
script's arguments in Python), more than the rest of a lookup or a row's encoding.

Layout: one string key per (project, view, entity), ``project:view:<entity key bytes>``,
holding the encoded row; one hash ``project!watermarks`` mapping view -> µs.

Writes go through a Lua script that applies ``is_newer`` to each key and SETs with PXAT
(the view's TTL after max(now, event time)), so a batch is atomic per key, conditional, and
one round trip: a batch is cut into script calls of ``_SCRIPT_KEYS`` keys (a script blocks
Redis while it runs; 1,000 keys take about a millisecond) sent in one pipeline.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ferry.core.errors import StoreError
from ferry.stores.base import ReadRequest, ViewTable, WriteResult, expires_at_ms, storage_key
from ferry.stores.resp import RespConnection

_SCRIPT_KEYS = 1_000

# KEYS: row keys. ARGV: for key i, ARGV[2i-1] = row, ARGV[2i] = expiry (ms since epoch, or
# "" for none). Bytes 2..17 of a row (Lua is 1-based) are the big-endian, sign-flipped
# (event, created) timestamps; they are compared as four unsigned 32-bit numbers, since Lua
# numbers are doubles and string "<" goes through strcoll (locale-dependent on binary data).
# Bytes 18..21 are the schema fingerprint. Returns how many rows were written.
_CONDITIONAL_SET = """
local function newer(new, old)
  local n1, n2, n3, n4 = struct.unpack('>I4I4I4I4', string.sub(new, 2, 17))
  local o1, o2, o3, o4 = struct.unpack('>I4I4I4I4', string.sub(old, 2, 17))
  if n1 ~= o1 then return n1 > o1 end
  if n2 ~= o2 then return n2 > o2 end
  if n3 ~= o3 then return n3 > o3 end
  if n4 ~= o4 then return n4 > o4 end
  return string.sub(new, 18, 21) ~= string.sub(old, 18, 21)
end
local written = 0
for i, key in ipairs(KEYS) do
  local row = ARGV[2 * i - 1]
  local old = redis.call('GET', key)
  if (not old) or newer(row, old) then
    local expiry = ARGV[2 * i]
    if expiry == '' then
      redis.call('SET', key, row)
    else
      redis.call('SET', key, row, 'PXAT', expiry)
    end
    written = written + 1
  end
end
return written
"""


@dataclass(frozen=True)
class RedisConfig:
    """Connection settings of the Redis store.

    Attributes:
        url: ``redis://[[user]:password@]host:port/db``, or ``rediss://`` for TLS with
            ``?ca=F&cert=F&key=F&server_name=N`` (``ferry.stores.resp``).
        socket_timeout_s: Bound on any one command's reply, in seconds. Default 5.
        connect_timeout_s: Bound on opening a connection, in seconds. Default 2.
    """

    url: str
    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0


class RedisOnlineStore:
    """Online store on one Redis server, over two pipelined connections: one for reads (the
    serving hot path) and one for writes, so a large write batch never queues reads behind
    it. Nothing is retried: a lost server fails the call at once (the caller decides)."""

    natural_batching_reads = 0  # pipelined: batching merged 1.04 requests per read

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        timeouts = (config.socket_timeout_s, config.connect_timeout_s)
        self._reads = RespConnection(config.url, *timeouts)
        self._writes = RespConnection(config.url, *timeouts)
        self._script_sha = hashlib.sha1(_CONDITIONAL_SET.encode()).hexdigest().encode()

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        keys = [storage_key(r.table, k) for r in requests for k in r.keys]
        if not keys:
            return [[] for _ in requests]
        values: list[bytes | None] = await self._reads.execute(b"MGET", *keys)
        out, pos = [], 0
        for request in requests:
            out.append(values[pos : pos + len(request.keys)])
            pos += len(request.keys)
        return out

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        if not rows:
            return WriteResult(0, 0)
        now_ms = time.time_ns() // 1_000_000
        commands = []
        for start in range(0, len(rows), _SCRIPT_KEYS):
            chunk = rows[start : start + _SCRIPT_KEYS]
            keys = [storage_key(table, key) for key, _ in chunk]
            args: list[bytes | int] = []
            for _, row in chunk:
                expiry = expires_at_ms(table, row, now_ms)
                args.append(row)
                args.append(b"" if expiry is None else expiry)
            commands.append((b"EVALSHA", self._script_sha, len(keys), *keys, *args))
        try:
            counts = await self._writes.execute_many(commands)
        except StoreError as err:
            if "NOSCRIPT" not in str(err):
                raise
            # Redis restarted or its script cache was flushed: load the script, go again.
            # Safe to repeat: rows written by the first attempt are skipped as not newer.
            await self._writes.execute(b"SCRIPT", b"LOAD", _CONDITIONAL_SET.encode())
            counts = await self._writes.execute_many(commands)
        written = sum(int(c) for c in counts)
        return WriteResult(written, len(rows) - written)

    async def delete(self, table: ViewTable, keys: Sequence[bytes]) -> int:
        if not keys:
            return 0
        return int(await self._writes.execute(b"DEL", *[storage_key(table, k) for k in keys]))

    async def read_watermarks(self, project: str, views: Sequence[str]) -> dict[str, int]:
        if not views:
            return {}
        values = await self._reads.execute(b"HMGET", _watermarks_key(project), *views)
        return {view: int(v) for view, v in zip(views, values, strict=True) if v is not None}

    async def write_watermark(self, project: str, view: str, micros: int) -> None:
        # Compare-and-raise in one script so concurrent jobs never lower a watermark.
        await self._writes.execute(
            b"EVAL",
            b"local cur = redis.call('HGET', KEYS[1], ARGV[1]) "
            b"if (not cur) or tonumber(cur) < tonumber(ARGV[2]) then "
            b"redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return 1",
            b"1",
            _watermarks_key(project),
            view,
            str(micros),
        )

    async def initialize(self) -> str:
        await self.ping()
        return "Redis needs nothing created: keys are written as they come"

    async def ping(self) -> None:
        await self._reads.execute(b"PING")

    async def close(self) -> None:
        await self._reads.close()
        await self._writes.close()


def _watermarks_key(project: str) -> bytes:
    # "!" cannot appear in a project or view name, so this never collides with a row key.
    return f"{project}!watermarks".encode()
