"""Training randomness that depends on a row's place in the global batch, not on how the batch is split.

With N processes, or gradient-accumulation micro-batches, each forward sees one contiguous slice of the
global batch. Dropout masks drawn from each process's own RNG would differ with every split, so N processes
could never reproduce one. Inside ``global_batch_noise(seed, offset, rows, global_size, counted)`` every draw
is made for the WHOLE global batch from a generator seeded by ``seed`` (the training loop passes one per
optimizer step)
and the forward keeps its own rows: a row's masks and noise depend only on the seed, the step and its
position in the global batch. The cost is drawing N x the local random numbers.

Draws made for one purpose may use a named ``stream`` (BERT4Rec's cloze masks use "cloze"): its own
generator, so the training loop can redraw the same masks for the whole global batch up front (to count
them) whatever else the forward draws first.

Item-level randomness (an item encoder's dropout on the item's features, or which item occurrences a hybrid
encoder shows as cold in its item table) has no row: the same item may be encoded by every process, once
per micro-batch, or in the item table. :func:`keyed_rand` draws it from a hash of (step seed, stream, item
id, column), so an item's mask is the same wherever and however often it is encoded in one optimizer step.

Outside the context (evaluation, tests, benchmarks) draws come from torch's global RNG as usual.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from zlib import crc32

import torch


@dataclass
class GlobalBatchNoise:
    seed: int
    offset: int  # position of this forward's first row in the global batch
    rows: int  # rows of this forward
    global_size: int  # rows of the global batch
    counted: bool = True  # False: a stand-in forward whose rows carry no weight (a process with no rows)
    generators: dict[str, torch.Generator] = field(default_factory=dict)
    keyed_draws: int = 0  # keyed_rand calls so far in this forward: each call site draws its own values
    subset: torch.Tensor | None = None  # inside subset_rows: the forward's rows that this part of it holds
    subset_key: str = ""  # inside subset_rows: names the part; each part draws from its own generator
    part_int16_draws: dict[str, int] = field(default_factory=dict)  # random_int16 calls so far, per part

    def generator(self, device: torch.device, stream: str = "") -> torch.Generator:
        stream = f"{stream}/part {self.subset_key}" if self.subset_key else stream
        key = f"{device}/{stream}"
        if key not in self.generators:  # one generator per device, stream and part, restarted for every forward
            seed = self.seed if not stream else (self.seed + crc32(stream.encode())) % 2**63
            self.generators[key] = torch.Generator(device=device).manual_seed(seed)
        return self.generators[key]

    def draw(self, shape: tuple[int, ...], device: torch.device, make, stream: str = "") -> torch.Tensor:
        """``make(global_shape, generator)`` for the global batch, then this forward's rows. A forward may
        stack V views of its rows ([view 1; view 2; ...], as PRL's clean and noisy views): then the draw
        holds V global batches and each view keeps its own slice."""
        leading = shape[0]
        if self.subset is not None:
            return self._draw_subset(shape, device, make, stream)
        if leading % self.rows:
            raise ValueError(f"a draw of {leading} rows does not stack views of the forward's {self.rows} rows")
        views = leading // self.rows
        drawn = make((views * self.global_size, *shape[1:]), self.generator(torch.device(device), stream))
        drawn = drawn.view(views, self.global_size, *shape[1:])[:, self.offset : self.offset + self.rows]
        return drawn.reshape(shape)

    def _part_rows(self, shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, int]:
        """The part's rows' places in the global batch [R] and how many views of them a draw of ``shape`` stacks."""
        rows = self.offset + self.subset.to(device)
        if shape[0] % len(rows):
            raise ValueError(f"a draw of {shape[0]} rows does not stack views of the {len(rows)} rows in use")
        return rows, shape[0] // len(rows)

    def subset_int16(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """:func:`random_int16` for the rows of a part (see :func:`subset_rows`), possibly stacked V times: each
        value a hash of (step seed, part, the part's call, the row's place in the global batch, the element), so
        only the part's own rows are drawn (a generator would have to draw the whole global batch for every
        part) and a row's values depend on nothing else."""
        rows, views = self._part_rows(shape, device)
        call = self.part_int16_draws.get(self.subset_key, 0)
        self.part_int16_draws[self.subset_key] = call + 1
        view_start = torch.arange(views, device=device)[:, None] * self.global_size  # [V, 1]
        places = (view_start + rows).reshape(-1)  # [V x R] rows in the V stacked global batches
        keys = _hash32(_base(self.seed % 2**63, f"int16/part {self.subset_key}/{call}").to(device) ^ _hash32(places))
        width = math.prod(shape[1:])
        out = torch.empty(len(places), width, dtype=torch.int16, device=device)
        return _hashed_columns(keys, width, out, lambda bits, block: block.copy_(bits)).view(shape)  # low 16 bits

    def _draw_subset(self, shape: tuple[int, ...], device: torch.device, make, stream: str) -> torch.Tensor:
        """A draw for some rows of the forward (see :func:`subset_rows`), possibly stacked V times: made for the
        whole global batch at this shape, each row keeping its own values."""
        rows, views = self._part_rows(shape, device)
        drawn = make((views * self.global_size, *shape[1:]), self.generator(torch.device(device), stream))
        return drawn.view(views, self.global_size, *shape[1:])[:, rows].reshape(shape)


_ACTIVE: ContextVar[GlobalBatchNoise | None] = ContextVar("global_batch_noise", default=None)


@contextmanager
def global_batch_noise(
    seed: int, offset: int, rows: int, global_size: int, counted: bool = True
) -> Iterator[GlobalBatchNoise]:
    """Make every draw of :func:`random_int16` and :func:`randn` independent of how the batch is split."""
    if not (0 <= offset and 0 < rows and offset + rows <= global_size):
        raise ValueError(f"rows {offset}..{offset + rows} do not lie in a global batch of {global_size}")
    token = _ACTIVE.set(GlobalBatchNoise(seed, offset, rows, global_size, counted))
    try:
        yield _ACTIVE.get()
    finally:
        _ACTIVE.reset(token)


@contextmanager
def subset_rows(rows: torch.Tensor, key: str, keyed_from: int | None = None) -> Iterator[None]:
    """Run part ``key`` of a forward on some of its rows (``rows`` [R], indices into the forward's rows): inside
    ``global_batch_noise`` the part's dropout masks are hashed from each row's place in the global batch
    (:meth:`GlobalBatchNoise.subset_int16`) and its other draws come from its own generator, made for the whole
    global batch with each row keeping its own values; either way a row's values depend on its place in the
    global batch and on its part, not on the other rows or parts of the forward or on how the batch is split
    (a row must belong to the same part in every split). ``keyed_from``: restart the keyed draws' call count
    there (every part encodes its items with the same draws). Elsewhere: no effect."""
    plan = _ACTIVE.get()
    if plan is None:
        yield
        return
    previous = plan.subset, plan.subset_key
    plan.subset, plan.subset_key = rows, key
    if keyed_from is not None:
        plan.keyed_draws = keyed_from
    try:
        yield
    finally:
        plan.subset, plan.subset_key = previous


def keyed_calls() -> int:
    """How many keyed draws this forward has made so far (0 outside ``global_batch_noise``)."""
    plan = _ACTIVE.get()
    return 0 if plan is None else plan.keyed_draws


def active() -> bool:
    return _ACTIVE.get() is not None


def counted() -> bool:
    """Whether this forward's rows carry weight (False only for a stand-in forward of a process with no rows)."""
    plan = _ACTIVE.get()
    return plan is None or plan.counted


def _draw(shape: tuple[int, ...], device: torch.device, make, stream: str = "") -> torch.Tensor:
    plan = _ACTIVE.get()
    return make(shape, None) if plan is None else plan.draw(tuple(shape), device, make, stream)


def random_int16(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Uniform int16 values over [-32768, 32767] (two per 32-bit draw: cheap dropout masks on CPU). Inside a
    part of a forward (:func:`subset_rows`) they are hashed per row instead (:meth:`GlobalBatchNoise.subset_int16`)."""
    plan = _ACTIVE.get()
    if plan is not None and plan.subset is not None:
        return plan.subset_int16(tuple(shape), torch.device(device))

    def make(size, generator):
        numel = math.prod(size)
        bits = torch.randint(
            -(2**31), 2**31 - 1, ((numel + 1) // 2,), dtype=torch.int32, device=device, generator=generator
        )
        return bits.view(torch.int16)[:numel].view(size)

    return _draw(shape, device, make)


def rand(
    shape: tuple[int, ...], device: torch.device, dtype: torch.dtype = torch.float32, stream: str = ""
) -> torch.Tensor:
    """Uniform [0, 1) values (dropout masks on accelerators, cloze masks)."""
    return _draw(shape, device, lambda size, gen: torch.rand(size, device=device, dtype=dtype, generator=gen), stream)


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer (lowbias32) on int64 tensors holding values in [0, 2^32): uniform output bits.
    Products wrap past 2^63, which keeps their low 32 bits, the only ones kept."""
    mask = 0xFFFFFFFF
    x = x & mask
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & mask
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & mask
    return x ^ (x >> 16)


def _keyed_rows(keys: torch.Tensor, stream: str, from_global_rng: bool = False) -> torch.Tensor:
    """The hashed (step seed, stream, call, key) of every key [...] as int64 values in [0, 2^32): what a keyed
    draw's columns are mixed with. Outside ``global_batch_noise``, or with ``from_global_rng``, the seed is
    drawn from torch's global RNG (one draw per call)."""
    plan = _ACTIVE.get()
    if plan is None or from_global_rng:
        seed, call = int(torch.randint(0, 2**31 - 1, ()).item()), 0
    else:  # every slice of a global batch makes the same calls in the same order
        seed, call = plan.seed % 2**63, plan.keyed_draws
        plan.keyed_draws += 1
    return _hash32(_base(seed, f"{stream}/{call}").to(keys.device) ^ _hash32(keys.long().to(torch.int64)))  # [...]


def _base(seed: int, name: str) -> torch.Tensor:
    """A 0-d int64 hash of a 63-bit seed and a name: where a family of hashed draws starts."""
    base = _hash32(torch.tensor((seed ^ crc32(name.encode())) & 0xFFFFFFFF, dtype=torch.int64))
    return _hash32(base ^ (seed >> 32))  # both halves of a 64-bit seed count


def _columns(width: int, device: torch.device) -> torch.Tensor:
    return (torch.arange(width, device=device, dtype=torch.int64) * 0x9E3779B9) & 0xFFFFFFFF  # [width]


def keyed_rand(keys: torch.Tensor, width: int, stream: str) -> torch.Tensor:
    """Uniform [0, 1) values [*keys.shape, width] that depend only on (the step's seed, ``stream``, key,
    column): an item's draw is the same on every process and in every micro-batch of one optimizer step."""
    rows = _keyed_rows(keys, stream)  # [...]
    bits = _hash32(rows[..., None] ^ _columns(width, keys.device))  # [..., width]
    return bits.to(torch.float64).div_(2.0**32).to(torch.float32)


def keyed_keep(keys: torch.Tensor, width: int, stream: str, p: float, from_global_rng: bool = False) -> torch.Tensor:
    """``keyed_rand(keys, width, stream) >= p`` as a bool mask [*keys.shape, width], the same values made about
    15x faster: the hash runs in place on 32-bit integers, a block of rows at a time (in cache), and the
    comparison is made on the integers against the smallest one whose uniform value reaches p. (An item
    encoder's dropout over the whole catalogue hashes N x F values every step.) ``from_global_rng``: the
    seed comes from torch's global RNG even inside ``global_batch_noise`` (see ``dropout.HashedDropout``)."""
    rows = _keyed_rows(keys, stream, from_global_rng).reshape(-1)  # [R]
    threshold = _as_int32(_first_reaching(p) ^ 0x80000000)  # signed order of the flipped bits = unsigned order

    def compare(bits: torch.Tensor, keep: torch.Tensor) -> None:
        bits ^= _as_int32(0x80000000)
        torch.ge(bits, threshold, out=keep)

    keep = torch.empty(len(rows), width, dtype=torch.bool, device=keys.device)  # [R, width]
    return _hashed_columns(rows, width, keep, compare).view(*keys.shape, width)


def _hashed_columns(rows: torch.Tensor, width: int, out: torch.Tensor, finish) -> torch.Tensor:
    """The 32-bit hash of every row value (int64 in [0, 2^32), [R]) with every column (as :func:`keyed_rand`
    mixes them), made a block of rows at a time in place on int32 (in cache), each block [b, width] handed to
    ``finish(bits, out[block])`` to be turned into the output. Returns ``out`` [R, width]."""
    rows, columns = _as_int32(rows), _as_int32(_columns(width, rows.device))  # [R], [width]
    block = max(1, 2**16 // max(width, 1))
    for start in range(0, len(rows), block):
        finish(_hash32_int32_(rows[start : start + block, None] ^ columns), out[start : start + block])
    return out


def _as_int32(values):
    """Values in [0, 2^32) (a Python int or an int64 tensor) as the int32 with the same 32 bits."""
    if isinstance(values, int):
        return values - 2**32 if values >= 2**31 else values
    return torch.where(values >= 2**31, values - 2**32, values).to(torch.int32)


def _hash32_int32_(x: torch.Tensor) -> torch.Tensor:
    """:func:`_hash32` in place on int32 tensors holding the 32 bits: products wrap modulo 2^32 alike, and the
    right shifts are masked to act as unsigned shifts."""
    x ^= (x >> 16) & 0xFFFF
    x *= _as_int32(0x7FEB352D)
    x ^= (x >> 15) & 0x1FFFF
    x *= _as_int32(0x846CA68B)
    x ^= (x >> 16) & 0xFFFF
    return x


@functools.lru_cache(maxsize=64)
def _first_reaching(p: float) -> int:
    """The smallest 32-bit b whose uniform value (b / 2^32, rounded to float32 as keyed_rand rounds it) is
    at least p: keyed_rand >= p exactly when its bits >= this."""
    low, high = 0, 2**32 - 1  # the largest b rounds to 1.0 >= any p < 1
    while low < high:
        middle = (low + high) // 2
        value = torch.tensor(middle, dtype=torch.float64).div(2.0**32).to(torch.float32)
        low, high = (low, middle) if bool(value >= p) else (middle + 1, high)  # compared as keyed_rand >= p is
    return low


@contextmanager
def shared_global_rng(device: torch.device, stream: str) -> Iterator[None]:
    """Inside ``global_batch_noise``: torch's global RNG seeded from the step's seed for the duration (and
    restored after), so code that draws from it (a third-party model's dropout) draws the same numbers in every
    slice of a global batch that runs it on the same inputs. Outside: nothing changes."""
    plan = _ACTIVE.get()
    if plan is None:
        yield
        return
    call, plan.keyed_draws = plan.keyed_draws, plan.keyed_draws + 1
    seed = (plan.seed + crc32(f"{stream}/{call}".encode())) % 2**63
    devices = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=torch.device(device).type):
        torch.manual_seed(seed)
        yield


def randn(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal values (PRL's noisy view)."""
    return _draw(shape, device, lambda size, gen: torch.randn(size, device=device, dtype=dtype, generator=gen))
