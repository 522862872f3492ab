"""Prefix sharing for stage 1 (docs/design.md §4): the rows of a group run as one sequence.

Rows of a group (a question, a DLK example, a GoT pair) share most of their tokens: the
passage and question, or the whole prompt up to the label word. A *pack* is such a group
laid out as one sequence — the group's longest common token prefix once, then each row's
remaining tokens (its *suffix*, at least its last token) one after the other — with a 4-D
attention mask under which every suffix token sees the prefix and the earlier tokens of its
own suffix only, and position ids that restart at the prefix length for every suffix. Each
row's last token then sees exactly the tokens, at exactly the positions, of an unshared run:
the prefix's keys and values are computed once and attended to by every row.

A single pass per pack keeps the engine's early stop after the deepest requested block, and
needs no key/value cache: nothing is copied per row, no second forward runs per batch, and
packs are batched by the same token budget as rows. A row alone is a pack of one (prefix 0).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

# Model types whose transformers code applies a custom 4-D mask as given (masking_utils
# returns it as-is) and uses position ids for rotary embeddings only; checked by
# tests/test_prefix_sharing.py. Others fall back to unshared rows (ALiBi models, for one,
# derive their biases from a 2-D mask).
SHARING_MODEL_TYPES = frozenset({"llama", "qwen2", "qwen3", "mistral"})
MASK_KINDS = {"sdpa": "bool", "eager": "additive"}


@dataclass(frozen=True)
class Pack:
    """Rows run as one sequence: their first `prefix` tokens (the same in every row) once,
    then the rest of each row in turn. A pack of one row has prefix 0: the row as it is."""

    rows: tuple[int, ...]
    prefix: int = 0

    def length(self, token_ids: Sequence[Sequence[int]]) -> int:
        """Tokens the pack runs: the prefix once plus every row's suffix."""
        return self.prefix + sum(len(token_ids[r]) - self.prefix for r in self.rows)

    def without(self, done: set[int]) -> Pack | None:
        """The pack less the rows in `done` (None when none is left)."""
        rows = tuple(r for r in self.rows if r not in done)
        if not rows:
            return None
        return Pack(rows, self.prefix if len(rows) > 1 else 0)

    def halves(self) -> list[Pack]:
        """Two packs of half the rows each, both with the prefix (after out-of-memory)."""
        mid = len(self.rows) // 2
        parts = (self.rows[:mid], self.rows[mid:])
        return [Pack(part, self.prefix if len(part) > 1 else 0) for part in parts]


def sharing_problem(model: nn.Module) -> str | None:
    """Why `model` cannot run packs (so rows run unshared), or None when it can."""
    config = getattr(model, "config", None)
    if config is None:
        return f"{type(model).__name__} has no transformers config"
    model_type = getattr(config, "model_type", None)
    if model_type not in SHARING_MODEL_TYPES:
        return f"model type {model_type!r} is not among {sorted(SHARING_MODEL_TYPES)}"
    implementation = getattr(config, "_attn_implementation", None)
    if implementation not in MASK_KINDS:
        return f"attention implementation {implementation!r} (sharing needs sdpa or eager)"
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    window = getattr(config, "sliding_window", None)
    if layer_types != {"full_attention"} or (
        window is not None and getattr(config, "use_sliding_window", True) is not False
    ):
        # A custom mask replaces the sliding-window one, so the window would be lost.
        return "sliding-window attention"
    return None


def attention_weight(config) -> float:
    """Cost of one (query, key) pair of attention relative to one token through a block, by
    FLOPs (Llama-shaped blocks): 2 * attention width / parameters of a block. `plan_packs`
    weighs a pack's longer (if masked) attention by it. 0 when the config lacks the sizes."""
    hidden = getattr(config, "hidden_size", 0)
    heads = getattr(config, "num_attention_heads", 0)
    if not hidden or not heads:
        return 0.0
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    mlp = 3 * hidden * getattr(config, "intermediate_size", 4 * hidden)
    return 2.0 * heads * head_dim / (attention + mlp)


def common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix, at most the shortest length minus one, so that
    every row keeps its last token (whose activation is taken) in its suffix."""
    limit = min(len(s) for s in sequences) - 1
    first = sequences[0]
    n = 0
    while n < limit and all(s[n] == first[n] for s in sequences):
        n += 1
    return max(n, 0)


def plan_packs(
    token_ids: Sequence[Sequence[int]],
    groups: Sequence[Hashable | None],
    token_budget: int,
    attention_weight: float = 0.0,
) -> list[Pack]:
    """Cover every row once with packs: the rows of a group together when they share a
    prefix, in packs of at most `token_budget` tokens (a larger group makes several packs,
    each with the prefix); ungrouped rows (group None) and groups of one alone.

    A group is packed only where that is estimated cheaper: tokens + attention_weight ·
    tokens² of the pack (its masked attention computes every query-key pair, across all its
    suffixes) against the sum over its rows run alone of tokens + attention_weight ·
    tokens² / 2 (sdpa skips the upper triangle of an unpadded causal batch); see
    `attention_weight`. Packing therefore needs suffixes short next to the prefix, as the
    study's are.
    """
    members: dict[Hashable, list[int]] = {}
    packs: list[Pack] = []
    for row, group in enumerate(groups):
        if group is None:
            packs.append(Pack((row,)))
        else:
            members.setdefault(group, []).append(row)
    for rows in members.values():
        packs.extend(_group_packs(rows, token_ids, token_budget, attention_weight))
    packs.sort(key=lambda p: p.rows[0])
    return packs


def _group_packs(rows, token_ids, token_budget, weight) -> list[Pack]:
    if len(rows) < 2:
        return [Pack((r,)) for r in rows]
    prefix = common_prefix([token_ids[r] for r in rows])
    chunks: list[list[int]] = [[]]
    length = prefix
    for r in rows:
        suffix = len(token_ids[r]) - prefix
        if chunks[-1] and length + suffix > token_budget:
            chunks.append([])
            length = prefix
        chunks[-1].append(r)
        length += suffix
    packs = []
    for chunk in chunks:
        pack = Pack(tuple(chunk), prefix)
        alone = sum(_cost(len(token_ids[r]), weight / 2) for r in chunk)
        if len(chunk) > 1 and prefix > 0 and _cost(pack.length(token_ids), weight) < alone:
            packs.append(pack)
        else:
            packs.extend(Pack((r,)) for r in chunk)
    return packs


def _cost(tokens: int, weight: float) -> float:
    return tokens + weight * tokens * tokens


@dataclass
class PackedInputs:
    """Model inputs of a batch of packs, and where each row's last token lies."""

    ids: torch.Tensor  # [batch, width]
    mask: torch.Tensor  # [batch, 1, width, width]: bool (True: attend) or additive float
    position_ids: torch.Tensor  # [batch, width]
    rows: list[int]  # row of each target, in order
    batch_index: torch.Tensor  # [targets]: the pack of each target
    token_index: torch.Tensor  # [targets]: the position of its last token in the sequence


def pack_inputs(
    packs: Sequence[Pack],
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    side: str,
    mask_kind: str,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
) -> PackedInputs:
    """Pad packs to one width on `side` and build, on `device`, the mask that keeps rows
    apart (it is batch x width², so it is made where it is used).

    `mask_kind` is "bool" (sdpa: True = attend) or "additive" (eager: 0 or the dtype's
    minimum, as transformers' own eager masks). Pad positions are seen by no real token;
    each sees itself only, so no softmax row is empty (an empty one is NaN in eager).
    """
    width = max(p.length(token_ids) for p in packs)
    ids = torch.full((len(packs), width), pad_id, dtype=torch.long)
    segment = torch.full((len(packs), width), -1, dtype=torch.long)  # -1 pad, 0 prefix
    positions = torch.zeros((len(packs), width), dtype=torch.long)
    rows, batch_index, token_index = [], [], []
    for b, pack in enumerate(packs):
        cursor = width - pack.length(token_ids) if side == "left" else 0
        pieces = [(0, token_ids[pack.rows[0]][: pack.prefix], None)]
        pieces += [(k, token_ids[r][pack.prefix :], r) for k, r in enumerate(pack.rows, 1)]
        for seg, tokens, row in pieces:
            span = slice(cursor, cursor + len(tokens))
            ids[b, span] = torch.as_tensor(list(tokens), dtype=torch.long)
            segment[b, span] = seg
            start = 0 if row is None else pack.prefix  # suffixes continue from the prefix
            positions[b, span] = torch.arange(start, start + len(tokens))
            cursor += len(tokens)
            if row is not None:
                rows.append(row)
                batch_index.append(b)
                token_index.append(cursor - 1)
    segment = segment.to(device)
    query, key = segment[:, :, None], segment[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    allowed = causal & (key >= 0) & ((key == 0) | (key == query))
    allowed |= torch.eye(width, dtype=torch.bool, device=device) & (query < 0)
    mask = allowed[:, None]
    if mask_kind == "additive":
        blocked = torch.finfo(dtype).min
        mask = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, blocked)
    return PackedInputs(
        ids.to(device),
        mask,
        positions.to(device),
        rows,
        torch.as_tensor(batch_index, dtype=torch.long),
        torch.as_tensor(token_index, dtype=torch.long),
    )
