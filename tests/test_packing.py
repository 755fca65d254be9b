"""Packed rows (padding-free training): sequences concatenated into one row, marked as transformers'
DataCollatorWithFlattening marks them, get what each gets alone: no state crosses a sequence start, in every form
and backend (docs/design.md 1.7). A start forgets the mLSTM memory entirely (log f = -1e30), which leaves its
stabiliser at the input gate where a fresh sequence starts it at max(log f, i): the outputs are the same but for
the normaliser's eps, added in units of the stabiliser. So the comparisons run in float64 with eps = 1e-30, where
a packed row must equal the sequences alone to 1e-12, and once in float32 with the default eps = 1e-6, to float32
rounding (the eps moves logits by up to about 2e-6 there)."""

import pytest
import torch
from tiny_models import noisy, random_ids, tiny_config
from transformers import DataCollatorWithFlattening, Trainer, TrainingArguments

from xlstm_hf import XLSTMForCausalLM, XLSTMForTokenClassification, XLSTMModel
from xlstm_hf.ops import mlstm, slstm
from xlstm_hf.ops.mlstm import mlstm_recurrent
from xlstm_hf.packing import sequence_starts

pytestmark = pytest.mark.usefixtures("single_thread")
# chunks of 8 steps: a sequence ending on a chunk edge, starts inside chunks, one of length 1, one at the row's end
LENGTHS = [8, 5, 1, 11, 3]
PATTERNS = ["neurips-mixed", "large-mixed"]
TOL = {"rtol": 1e-12, "atol": 1e-12}
EXACT = {"mlstm_eps": 1e-30}  # see the module docstring


def packed(lengths: list[int], seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """(the sequences, their concatenation [1, T], its position_ids [1, T])."""
    sequences = [random_ids(length, seed=seed + n) for n, length in enumerate(lengths)]
    positions = torch.cat([torch.arange(length) for length in lengths])[None]
    return sequences, torch.cat(sequences)[None], positions


@pytest.mark.parametrize("backend", ["native", "auto"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_packed_row_gives_every_sequence_its_own_logits_and_gradients(pattern, backend):
    torch.manual_seed(0)
    model = noisy(XLSTMForCausalLM(tiny_config(pattern, backend=backend, **EXACT))).double()
    sequences, row, positions = packed(LENGTHS)
    together = model(row, position_ids=positions).logits[0]
    alone = torch.cat([model(sequence[None]).logits[0] for sequence in sequences])
    torch.testing.assert_close(together, alone, **TOL)

    weights = torch.randn_like(together)
    grads = torch.autograd.grad((model(row, position_ids=positions).logits[0] * weights).sum(), model.parameters())
    parts = weights.split(LENGTHS)
    alone_loss = sum((model(sequence[None]).logits[0] * part).sum() for sequence, part in zip(sequences, parts))
    for packed_grad, alone_grad in zip(grads, torch.autograd.grad(alone_loss, model.parameters())):
        torch.testing.assert_close(packed_grad, alone_grad, **TOL)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_with_the_default_eps_in_float32_a_packed_row_is_within_float32_rounding(pattern):
    torch.manual_seed(0)
    model = noisy(XLSTMForCausalLM(tiny_config(pattern)))
    sequences, row, positions = packed(LENGTHS)
    alone = torch.cat([model(sequence[None]).logits[0] for sequence in sequences])
    torch.testing.assert_close(model(row, position_ids=positions).logits[0], alone, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_bidirectional_tagger_reads_each_packed_sequence_alone_in_both_directions(pattern):
    torch.manual_seed(0)
    model = noisy(XLSTMForTokenClassification(tiny_config(pattern, bidirectional=True, num_labels=3, **EXACT)))
    model = model.double()
    sequences, row, positions = packed(LENGTHS)
    together = model(row, position_ids=positions).logits[0]
    alone = torch.cat([model(sequence[None]).logits[0] for sequence in sequences])
    torch.testing.assert_close(together, alone, **TOL)


def test_packed_rows_with_padding_and_several_rows():
    torch.manual_seed(0)
    model = noisy(XLSTMModel(tiny_config("neurips-mixed", **EXACT))).double()
    first, row_a, positions_a = packed([4, 6, 2], seed=0)
    second, row_b, positions_b = packed([9, 5], seed=5)
    rows = torch.stack([torch.cat([torch.zeros(2, dtype=torch.long), row_a[0]]), row_b[0]])  # left-padded first row
    positions = torch.stack([torch.cat([torch.zeros(2, dtype=torch.long), positions_a[0]]), positions_b[0]])
    mask = torch.ones_like(rows)
    mask[0, :2] = 0
    out = model(rows, attention_mask=mask, position_ids=positions).last_hidden_state
    alone = [torch.cat([model(s[None]).last_hidden_state[0] for s in sequences]) for sequences in (first, second)]
    torch.testing.assert_close(out[0, 2:], alone[0], **TOL)
    torch.testing.assert_close(out[1], alone[1], **TOL)


@pytest.mark.parametrize("marker", ["seq_idx", "cu_seq_lens"])
def test_seq_idx_and_cumulative_lengths_mark_the_same_starts(marker):
    _, row, positions = packed(LENGTHS)
    expected = sequence_starts(1, row.shape[1], None, position_ids=positions)
    if marker == "seq_idx":
        seq_idx = torch.cat([torch.full((length,), n) for n, length in enumerate(LENGTHS)])[None]
        starts = sequence_starts(1, row.shape[1], None, seq_idx=seq_idx)
    else:
        cumulative = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()])
        starts = sequence_starts(1, row.shape[1], None, cu_seq_lens_q=cumulative, cu_seq_lens_k=cumulative,
                                 max_length_q=11, max_length_k=11)
    assert torch.equal(starts[:, 1:], expected[:, 1:]) and expected.sum() == len(LENGTHS)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_position_zero_after_a_cache_starts_afresh_and_other_positions_continue(pattern):
    torch.manual_seed(0)
    model = noisy(XLSTMForCausalLM(tiny_config(pattern, **EXACT))).double()
    ids = random_ids(2, 7)
    cache = model(ids[:, :4]).cache
    continued = model(ids[:, 4:], cache=cache, position_ids=torch.arange(4, 7).expand(2, 3)).logits
    torch.testing.assert_close(continued, model(ids).logits[:, 4:], **TOL)
    fresh = model(ids[:, 4:], cache=model(ids[:, :4]).cache, position_ids=torch.arange(3).expand(2, 3)).logits
    torch.testing.assert_close(fresh, model(ids[:, 4:]).logits, **TOL)


def random_gates(B: int, H: int, T: int, D: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, T, D, generator=generator, dtype=torch.float64) for _ in range(3))
    i, f = (torch.randn(B, H, T, generator=generator, dtype=torch.float64) * 2 for _ in range(2))
    return q, k, v, i, f


@pytest.mark.parametrize("form", ["chunkwise", "parallel"])
def test_mlstm_forms_forget_everything_at_a_start(form):
    """log f = -1e30 at a start (what the layers pass): each form equals the sequences run one by one."""
    from xlstm_hf.modeling_xlstm import forget_at_starts

    q, k, v, i, f = random_gates(2, 2, 28, 4)
    resets = torch.zeros(2, 28, dtype=torch.bool)
    resets[:, [8, 13, 14, 25]] = True
    h, state = mlstm(q, k, v, *forget_at_starts(i, f, resets), chunk_size=8, form=form, eps=1e-30)
    bounds = [0, 8, 13, 14, 25, 28]
    parts = [mlstm_recurrent(*(x[:, :, a:b] for x in (q, k, v, i, f)), eps=1e-30) for a, b in zip(bounds, bounds[1:])]
    torch.testing.assert_close(h, torch.cat([part[0] for part in parts], dim=2), **TOL)
    C, n, m = state  # the last sequence's memory, up to the scale exp(m) its stabiliser gives it
    C_alone, n_alone, m_alone = parts[-1][1]
    scale = torch.exp(m - m_alone)
    torch.testing.assert_close(C * scale[..., None, None], C_alone, **TOL)
    torch.testing.assert_close(n * scale[..., None], n_alone, **TOL)


@pytest.mark.parametrize("backend", ["native", "cpp"])
def test_slstm_starts_afresh_at_a_start_with_gradients(backend):
    generator = torch.Generator().manual_seed(0)
    B, H, T, D = 2, 2, 12, 4
    gates_x = torch.randn(B, H, T, 4, D, generator=generator, dtype=torch.float64, requires_grad=True)
    kernel = (torch.randn(H, D, 4, D, generator=generator, dtype=torch.float64) * 0.3).requires_grad_()
    bias = torch.randn(H, 4, D, generator=generator, dtype=torch.float64, requires_grad=True)
    resets = torch.zeros(B, T, dtype=torch.bool)
    resets[0, 5] = resets[1, 1] = resets[1, 11] = True
    h, _ = slstm(gates_x, kernel, bias, resets=resets, backend=backend)
    grads = torch.autograd.grad(h.square().sum(), (gates_x, kernel, bias))
    for row in range(B):
        bounds = [0, *resets[row].nonzero().flatten().tolist(), T]
        parts = [slstm(gates_x[row:row + 1, :, a:b], kernel, bias, backend="native")[0] for a, b in
                 zip(bounds, bounds[1:])]
        torch.testing.assert_close(h[row:row + 1], torch.cat(parts, dim=2), rtol=1e-12, atol=1e-12)
    expected = torch.autograd.grad(sum(
        slstm(gates_x[row:row + 1, :, a:b], kernel, bias, backend="native")[0].square().sum()
        for row in range(B)
        for a, b in zip([0, *resets[row].nonzero().flatten().tolist()], [*resets[row].nonzero().flatten().tolist(), T])
    ), (gates_x, kernel, bias))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_packed_loss_equals_the_padded_batch_loss_under_the_same_token_count():
    torch.manual_seed(0)
    model = noisy(XLSTMForCausalLM(tiny_config("neurips-mixed", **EXACT))).double()
    sequences = [random_ids(length, seed=n) for n, length in enumerate([6, 9, 4])]
    collated = DataCollatorWithFlattening()([{"input_ids": s.tolist()} for s in sequences])
    batch = {name: torch.tensor(value) for name, value in collated.items()}
    packed_loss = model(**batch).loss
    padded = torch.zeros(3, 9, dtype=torch.long)
    labels = torch.full((3, 9), -100)
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)] = labels[row, : len(sequence)] = sequence
    mask = (labels != -100).long()
    padded_loss = model(padded, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(packed_loss, padded_loss, **TOL)


def test_trainer_trains_with_the_flattening_collator(tmp_path):
    torch.manual_seed(0)
    model = XLSTMForCausalLM(tiny_config("large-mixed"))
    data = [{"input_ids": random_ids(length, seed=n).tolist()} for n, length in enumerate([5, 12, 3, 8, 7, 10] * 4)]
    args = TrainingArguments(tmp_path, per_device_train_batch_size=6, max_steps=12, learning_rate=3e-3,
                             report_to=[], use_cpu=True, logging_steps=1, save_strategy="no")
    trainer = Trainer(model, args, train_dataset=data, data_collator=DataCollatorWithFlattening())
    losses = [entry["loss"] for entry in trainer.train() and trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0]
