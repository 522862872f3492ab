"""The forward-pass engine of stage 1 (docs/design.md §4): which layers to take, how prompts
are batched and padded, and the hooks that capture the last-token residual stream.

Forward hooks on the decoder blocks copy out only the last real token of each prompt and
abort the forward pass right after the deepest requested block, so later blocks, the final
norm and the lm_head never run. Batches hold rows or packs (`probegen.prefix`: the rows of a
group sharing one run of their common prefix). `probegen.extract` drives it and stores what
it yields.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from probegen.prefix import MASK_KINDS, Pack, pack_inputs, sharing_problem

log = logging.getLogger(__name__)


class _StopForward(Exception):
    """Raised by the deepest hook to end the forward pass early."""


class NonFiniteActivationError(RuntimeError):
    """An activation was NaN or infinite."""


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks (Llama/Qwen/Mistral `model.layers`, GPT-2 `h`, …)."""
    for path in ("model.layers", "model.model.layers", "transformer.h", "gpt_neox.layers"):
        module = model
        for attr in path.split("."):
            module = getattr(module, attr, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList):
            return module
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"cannot find the decoder blocks of {type(model).__name__}")
    return max(lists, key=len)


def default_layers(n_layers: int) -> list[int]:
    """docs/design.md §4: layers 1, 3, 5, … (0-based blocks), as in the original study."""
    return list(range(1, n_layers, 2))


def select_layers(selection: str | int | Sequence[int], n_layers: int) -> list[int]:
    """`default`, `all`, an int or a list of ints -> sorted valid layer indices."""
    if selection == "default":
        return default_layers(n_layers)
    if selection == "all":
        return list(range(n_layers))
    if isinstance(selection, str):
        if not selection.lstrip("-").isdigit():
            raise ValueError(f"layers={selection!r}: use default, all, an int or a list of ints")
        selection = int(selection)
    layers = [selection] if isinstance(selection, int) else [int(x) for x in selection]
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has blocks 0..{n_layers - 1}")
    return sorted(set(layers))


def plan_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group row indices into batches, longest first, each under `token_budget` padded tokens.

    Longest-first puts the biggest batch at the start, so an out-of-memory error shows at
    once, and similar lengths share a batch, so little compute goes to padding.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and (len(current) + 1) * longest > token_budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, side: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id lists into (input_ids, attention_mask) on the given side."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[row, span] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Position of the last real token of each row, whichever side was padded."""
    width = mask.shape[1]
    return width - 1 - torch.flip(mask, dims=[1]).argmax(dim=1)


class LayerTap:
    """Hooks that capture the last-token output of chosen blocks and stop after the deepest."""

    def __init__(self, model: nn.Module, layers: Sequence[int]):
        self.blocks = decoder_layers(model)
        self.layers = sorted(layers)
        self.deepest = self.layers[-1]
        self.targets: tuple[torch.Tensor, torch.Tensor] | None = None  # (batch, token) index
        self.captured: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> LayerTap:
        for i in self.layers:
            self._handles.append(self.blocks[i].register_forward_hook(self._hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, layer: int) -> Callable:
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            batch, token = (t.to(hidden.device) for t in self.targets)
            self.captured[layer] = hidden[batch, token].detach()
            if layer == self.deepest:
                raise _StopForward

        return hook

    @torch.inference_mode()
    def run(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        targets: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[int, torch.Tensor]:
        """One forward pass; returns layer -> [targets, hidden] activations.

        With a 2-D `mask` alone, the targets are each row's last real token and positions
        count real tokens only, so left padding does not shift RoPE positions. A packed
        batch (`probegen.prefix`) gives its 4-D mask, position ids and targets.
        """
        self.captured = {}
        if targets is None:
            targets = (torch.arange(ids.shape[0]), last_token_index(mask))
        if position_ids is None:
            position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        self.targets = tuple(t.to(ids.device) for t in targets)
        with contextlib.suppress(_StopForward):
            model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False)
        missing = set(self.layers) - set(self.captured)
        if missing:
            raise RuntimeError(f"forward pass never reached layers {sorted(missing)}")
        return self.captured


@dataclass
class BatchResult:
    rows: list[int]  # indices into the dataset's rows
    activations: dict[int, torch.Tensor]  # layer -> [len(rows), hidden], on CPU
    tokens_run: int = 0  # real (non-pad) tokens the forward pass ran
    tokens: int = 0  # tokens of its rows, i.e. what running them unshared costs


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


@dataclass
class Extractor:
    """Runs batches through `model` and yields last-token activations of `layers`.

    A batch is a list of row indices, or of packs (`probegen.prefix.Pack`), which need a
    model that `prefix.sharing_problem` accepts. On CUDA out-of-memory the token budget
    halves and the failed batch is split (a lone pack into two) and retried; later batches
    larger than the new budget are split too.
    """

    model: nn.Module
    layers: Sequence[int]
    pad_id: int
    token_budget: int
    padding_side: str = "left"
    input_device: torch.device | str = "cpu"
    progress: bool = True

    def run(
        self,
        token_ids: Sequence[Sequence[int]],
        batches: Sequence[Sequence[int | Pack]],
        row_names: Sequence[str] | None = None,
        context: str = "",
    ) -> Iterator[BatchResult]:
        """Yield each batch of `batches` (lists of indices into `token_ids`, or of packs)
        once finished."""
        pending = [[p if isinstance(p, Pack) else Pack((int(p),)) for p in b] for b in batches]
        # Softmax underflow yields subnormal floats, which slow CPU math ~20x; flushing them
        # to zero changes values below 1e-38 only. Restored to torch's default afterwards.
        torch.set_flush_denormal(True)
        try:
            with LayerTap(self.model, self.layers) as tap:
                yield from self._run(tap, token_ids, pending, row_names, context)
        finally:
            torch.set_flush_denormal(False)

    def _run(self, tap, token_ids, pending, row_names, context) -> Iterator[BatchResult]:
        bar = tqdm(
            total=sum(len(p.rows) for b in pending for p in b),
            unit="row",
            disable=not self.progress,
            desc=context or "extract",
            mininterval=2.0,
        )
        run_total, row_total, start = 0, 0, time.perf_counter()
        while pending:
            batch = pending.pop(0)
            splittable = len(batch) > 1 or len(batch[0].rows) > 1
            width = max(p.length(token_ids) for p in batch)
            if splittable and len(batch) * width > self.token_budget:
                pending[:0] = self._split(batch, token_ids)
                continue
            try:
                rows, out, tokens_run = self._forward(tap, batch, token_ids)
            except Exception as err:
                if not is_oom(err) or not splittable:
                    raise
                out = None
            if out is None:  # outside `except`, so the failed pass's tensors can be freed
                torch.cuda.empty_cache()
                self.token_budget = max(1, self.token_budget // 2)
                n_rows = sum(len(p.rows) for p in batch)
                log.warning("out of memory on %d rows; budget now %d", n_rows, self.token_budget)
                pending.insert(0, batch)
                continue
            cpu = {layer: t.to("cpu") for layer, t in out.items()}
            check_finite(cpu, rows, row_names, context)
            tokens = sum(len(token_ids[r]) for r in rows)
            run_total, row_total = run_total + tokens_run, row_total + tokens
            bar.update(len(rows))
            bar.set_postfix(
                tok_s=f"{run_total / (time.perf_counter() - start):.0f}",
                run=run_total,
                saved=f"{row_total - run_total} ({1 - run_total / row_total:.0%})",
            )
            yield BatchResult(rows, cpu, tokens_run, tokens)
        bar.close()

    def _split(self, batch: list[Pack], token_ids) -> list[list[Pack]]:
        """Sub-batches under the budget; a lone pack over it is halved."""
        if len(batch) == 1:
            return [[half] for half in batch[0].halves()]
        sub = plan_batches([p.length(token_ids) for p in batch], self.token_budget)
        return [[batch[j] for j in b] for b in sub]

    def _forward(self, tap, batch: list[Pack], token_ids):
        """(rows, layer -> activations of those rows, real tokens run) of one forward."""
        device = self.input_device
        if all(len(p.rows) == 1 for p in batch):  # plain rows: the 2-D mask path
            rows = [p.rows[0] for p in batch]
            ids, mask = pad_batch([token_ids[r] for r in rows], self.pad_id, self.padding_side)
            out = tap.run(self.model, ids.to(device), mask.to(device))
            return rows, out, int(mask.sum())
        problem = sharing_problem(self.model)
        if problem:
            raise ValueError(f"packs need a model that can share prefixes: {problem}")
        kind = MASK_KINDS[self.model.config._attn_implementation]
        dtype = next(tap.blocks[0].parameters()).dtype  # the additive mask's dtype
        packed = pack_inputs(batch, token_ids, self.pad_id, self.padding_side, kind, dtype, device)
        out = tap.run(
            self.model,
            packed.ids,
            packed.mask,
            position_ids=packed.position_ids,
            targets=(packed.batch_index, packed.token_index),
        )
        return packed.rows, out, sum(p.length(token_ids) for p in batch)


def check_finite(
    activations: dict[int, torch.Tensor], batch: Sequence[int], row_names, context: str
) -> None:
    """Raise, naming model/dataset, layer and row, if any activation is NaN or infinite."""
    for layer, tensor in activations.items():
        bad = ~torch.isfinite(tensor).all(dim=1)
        if bad.any():
            row = batch[int(bad.nonzero()[0])]
            name = row_names[row] if row_names is not None else row
            raise NonFiniteActivationError(
                f"{context}: non-finite activation at layer {layer}, row {name!r}. Try "
                f"model.dtype=fp32, or check the prompt of that row."
            )
