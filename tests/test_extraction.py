"""The forward-pass engine (`probegen.forward`): layer selection, batching, padding, early
stop, errors, out-of-memory retry, token counts. Prefix sharing: tests/test_prefix_sharing.py."""

from __future__ import annotations

import pytest
import torch

from probegen.forward import (
    Extractor,
    LayerTap,
    NonFiniteActivationError,
    decoder_layers,
    last_token_index,
    pad_batch,
    plan_batches,
    select_layers,
)
from probegen.prefix import Pack

PROMPTS = [
    "The cat sat on the mat.",
    "Hi",
    "A much longer prompt that goes on and on for quite a while, padding everything else.",
    "Fifty-one is larger than fifty-two.",
    "Paris is the capital of France.",
]


def run_all(model, token_ids, batches, layers, **kwargs):
    extractor = Extractor(model, layers, pad_id=0, token_budget=10**6, progress=False, **kwargs)
    out = {}
    for result in extractor.run(token_ids, batches):
        for j, row in enumerate(result.rows):
            out[row] = {i: result.activations[i][j] for i in layers}
    return out


def test_plan_batches_covers_rows_once_under_budget():
    lengths = [5, 17, 3, 9, 9, 30, 1, 12]
    batches = plan_batches(lengths, token_budget=32)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 32
    assert batches[0] == [5]  # longest first: out-of-memory shows on the first batch


def test_last_token_index_either_padding_side():
    ids = [[1, 2, 3], [4], [5, 6]]
    _, left = pad_batch(ids, 0, "left")
    _, right = pad_batch(ids, 0, "right")
    assert last_token_index(left).tolist() == [2, 2, 2]
    assert last_token_index(right).tolist() == [2, 0, 1]


def test_select_layers():
    assert select_layers("default", 36) == list(range(1, 36, 2))
    assert select_layers("default", 40)[-1] == 39
    assert select_layers("all", 4) == [0, 1, 2, 3]
    assert select_layers([3, 1, 3], 4) == [1, 3]
    assert select_layers(2, 4) == [2]
    assert select_layers("13", 40) == [13]  # a number given as text, not digits 1 and 3
    with pytest.raises(ValueError, match="default, all, an int"):
        select_layers("last", 4)
    with pytest.raises(ValueError, match="blocks 0..3"):
        select_layers([4], 4)


@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_equals_one_prompt_at_a_time(tiny, side):
    ids = [tiny.tokenizer(t).input_ids for t in PROMPTS]
    layers = [0, 1, 3]
    single = {}
    for r, seq in enumerate(ids):
        single[r] = run_all(tiny.model, [seq], [[0]], layers)[0]
    batched = run_all(
        tiny.model, ids, plan_batches([len(s) for s in ids], 10**6), layers, padding_side=side
    )
    assert len(plan_batches([len(s) for s in ids], 10**6)) == 1  # really one padded batch
    for r in range(len(ids)):
        for i in layers:
            torch.testing.assert_close(batched[r][i], single[r][i], atol=1e-5, rtol=1e-4)


def test_layer_i_is_hidden_states_i_plus_1(tiny):
    ids = tiny.tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    with torch.inference_mode():
        hidden = tiny.model(ids, output_hidden_states=True).hidden_states
    got = run_all(tiny.model, [ids[0].tolist()], [[0]], [0, 1, 2])[0]
    for i in (0, 1, 2):
        torch.testing.assert_close(got[i], hidden[i + 1][0, -1])


def test_last_layer_is_the_residual_stream_before_the_final_norm(tiny):
    """HF's last hidden_states entry has the final norm applied; probegen's layer n-1 is the
    block's own output (the forward pass stops there), whose norm is that entry."""
    ids = tiny.tokenizer(PROMPTS[2], return_tensors="pt").input_ids
    with torch.inference_mode():
        hidden = tiny.model(ids, output_hidden_states=True).hidden_states
        got = run_all(tiny.model, [ids[0].tolist()], [[0]], [3])[0][3]
        torch.testing.assert_close(tiny.model.model.norm(got), hidden[4][0, -1])
    assert not torch.allclose(got, hidden[4][0, -1])


def test_forward_stops_after_deepest_layer(tiny):
    calls = []
    blocks = decoder_layers(tiny.model)
    hooks = [
        b.register_forward_hook(lambda m, a, o, i=i: calls.append(i)) for i, b in enumerate(blocks)
    ]
    hooks.append(tiny.model.model.norm.register_forward_hook(lambda *a: calls.append("norm")))
    hooks.append(tiny.model.lm_head.register_forward_hook(lambda *a: calls.append("lm_head")))
    try:
        run_all(tiny.model, [[5, 6, 7]], [[0]], [0, 1])
    finally:
        for h in hooks:
            h.remove()
    assert calls == [0, 1]
    assert not LayerTap(tiny.model, [1])._handles  # hooks removed after the run


def test_non_finite_activation_names_layer_and_row(tiny):
    ids = [tiny.tokenizer(t).input_ids for t in PROMPTS[:2]]
    block = decoder_layers(tiny.model)[1]
    saved = block.mlp.down_proj.weight.detach().clone()
    with torch.no_grad():
        block.mlp.down_proj.weight.fill_(float("nan"))
    try:
        extractor = Extractor(tiny.model, [0, 1], pad_id=0, token_budget=10**6, progress=False)
        with pytest.raises(NonFiniteActivationError, match=r"tiny/demo.*layer 1.*'row-a'"):
            list(extractor.run(ids, [[0, 1]], ["row-a", "row-b"], "tiny/demo"))
    finally:
        with torch.no_grad():
            block.mlp.down_proj.weight.copy_(saved)


class OomAbove(torch.nn.Module):
    """Wraps a model and raises CUDA-style out-of-memory on batches over `limit` tokens."""

    def __init__(self, model, limit):
        super().__init__()
        self.inner, self.limit, self.ooms = model, limit, 0
        # as the wrapped model, for decoder_layers() and prefix.sharing_problem()
        self.config, self.model = model.config, model.model

    def forward(self, input_ids, **kwargs):
        if input_ids.numel() > self.limit:
            self.ooms += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(input_ids=input_ids, **kwargs)


def test_out_of_memory_halves_budget_and_retries(tiny):
    ids = [tiny.tokenizer(t).input_ids for t in PROMPTS]
    wrapped = OomAbove(tiny.model, limit=100)
    extractor = Extractor(wrapped, [1], pad_id=0, token_budget=10**4, progress=False)
    got = {}
    for result in extractor.run(ids, [list(range(len(ids)))]):
        for j, row in enumerate(result.rows):
            got[row] = result.activations[1][j]
    assert wrapped.ooms >= 1 and extractor.token_budget < 10**4
    expected = run_all(tiny.model, ids, [list(range(len(ids)))], [1])
    assert sorted(got) == list(range(len(ids)))
    for r in got:
        torch.testing.assert_close(got[r], expected[r][1], atol=1e-5, rtol=1e-4)


def test_other_errors_are_not_retried(tiny):
    class Broken(torch.nn.Module):
        def forward(self, **kwargs):
            raise ValueError("boom")

    broken = Broken()
    broken.model = tiny.model.model  # so decoder_layers() finds blocks to hook
    extractor = Extractor(broken, [0], pad_id=0, token_budget=10**4, progress=False)
    with pytest.raises(ValueError, match="boom"):
        list(extractor.run([[1, 2], [3, 4]], [[0, 1]]))


def test_batch_results_count_tokens_run_and_the_rows_tokens(tiny):
    ids = [[5, 6, 7, 8], [5, 6, 7, 9, 10], [11, 12]]
    extractor = Extractor(tiny.model, [1], pad_id=0, token_budget=10**4, progress=False)
    (whole,) = extractor.run(ids, [[0, 1, 2]])
    assert (whole.tokens_run, whole.tokens) == (11, 11)  # padding is not counted
    (packed,) = extractor.run(ids, [[Pack((0, 1), 3), Pack((2,))]])
    assert packed.rows == [0, 1, 2]
    assert (packed.tokens_run, packed.tokens) == (3 + 1 + 2 + 2, 11)
    for j in range(3):
        torch.testing.assert_close(
            packed.activations[1][j], whole.activations[1][j], atol=1e-5, rtol=1e-4
        )


def test_progress_bar_shows_tokens_run_and_saved(tiny, capsys):
    ids = [[5, 6, 7, 8], [5, 6, 7, 9, 10], [11, 12]]
    extractor = Extractor(tiny.model, [1], pad_id=0, token_budget=10**4, progress=True)
    list(extractor.run(ids, [[Pack((0, 1), 3), Pack((2,))]], context="tiny/demo"))
    shown = capsys.readouterr().err
    assert "tiny/demo" in shown and "run=8" in shown and "saved=3 (27%)" in shown
