"""The compiled CPU kernels (`xlstm_hf/csrc`) against the PyTorch reference they replace: outputs, final
states and every gradient (initial state included) on odd shapes, with padding and initial states;
`torch.library.opcheck`; `gradcheck` in float64; the backend decision; whole models on both backends.

In CI the extension must build (a failure there fails these tests); elsewhere, without a compiler,
they are skipped."""

import os
import subprocess
import sys

import pytest
import torch
from kernel_inputs import (
    TOLERANCE,
    assert_all_close,
    mlstm_step_inputs,
    outputs_and_gradients,
    padding_mask,
    randn,
    slstm_inputs,
    slstm_state,
    step_outputs_and_gradients,
)
from test_cuda_kernels import (
    CHUNKWISE_PACKED_CASES,
    CHUNKWISE_SHAPES,
    assert_chunkwise_matches_reference,
    assert_chunkwise_packed,
    assert_matches_reference,
    assert_spans_summed,
    chunkwise_inputs,
)
from torch.autograd import gradcheck
from torch.testing import assert_close

from xlstm_hf import XLSTMConfig, XLSTMForCausalLM, XLSTMModel, ops
from xlstm_hf.ops import compiled
from xlstm_hf.ops.extension import extension_status
from xlstm_hf.ops.mlstm import mlstm_step
from xlstm_hf.ops.slstm import slstm_recurrent

available, why = extension_status()
if not available:
    assert not os.environ.get("CI"), f"CI must build the compiled kernels, but: {why}"
    pytest.skip(f"the compiled kernels are unavailable here: {why}", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("single_thread")


# ---- sLSTM ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 7, 5), (3, 2, 13, 8), (1, 4, 37, 3)])
@pytest.mark.parametrize("kind", ["none", "left", "right", "random"])
@pytest.mark.parametrize("with_state", [False, True])
def test_slstm_kernel_matches_reference(dtype, shape, kind, with_state):
    B, H, T, D = shape
    inputs = slstm_inputs(B, H, T, D, dtype)
    state = slstm_state(B, H, D, dtype) if with_state else None
    mask = padding_mask(B, T, kind)
    h, final, grads = outputs_and_gradients(compiled.slstm, inputs, state, mask)
    h_ref, final_ref, grads_ref = outputs_and_gradients(slstm_recurrent, inputs, state, mask)
    assert h.dtype == dtype and all(s.dtype == dtype for s in final)
    assert_close(h, h_ref, **TOLERANCE[dtype])
    assert_all_close(final, final_ref, dtype)
    assert_all_close(grads, grads_ref, dtype)


def test_slstm_kernel_ignores_anything_at_padded_steps():
    """Padded steps pass the state through, whatever their inputs hold, and get no gradient."""
    inputs = slstm_inputs(2, 2, 9, 4, torch.float32)
    mask = padding_mask(2, 9, "left")
    poisoned = dict(inputs, gates_x=inputs["gates_x"].clone())
    padded = ~mask[:, None, :]  # [B, 1, T] against gates_x [B, H, T, 4, D]
    poisoned["gates_x"][padded.expand(-1, 2, -1)] = float("nan")
    h, final, grads = outputs_and_gradients(compiled.slstm, poisoned, None, mask)
    h_ref, final_ref, _ = outputs_and_gradients(compiled.slstm, inputs, None, mask)
    assert torch.equal(h, h_ref) and all(torch.equal(s, r) for s, r in zip(final, final_ref))
    padded_grads = grads[0][padded.expand(-1, 2, -1)]
    assert torch.equal(padded_grads, torch.zeros_like(padded_grads))


def test_slstm_kernel_gradcheck():
    inputs = slstm_inputs(2, 2, 4, 3, torch.float64)
    state = slstm_state(2, 2, 3, torch.float64)
    mask = padding_mask(2, 4, "left")

    def run(gates_x, recurrent_kernel, bias, h, c, n, m):
        out, final = compiled.slstm(gates_x, recurrent_kernel, bias, mask=mask, initial_state=(h, c, n, m))
        return (out, *final)

    leaves = [x.clone().requires_grad_() for x in (*inputs.values(), *state)]
    assert gradcheck(run, leaves)


@pytest.mark.parametrize("with_mask", [False, True])
def test_slstm_operator_passes_opcheck(with_mask):
    inputs = slstm_inputs(2, 2, 5, 3, torch.float32)
    initial = torch.stack(slstm_state(2, 2, 3, torch.float32))
    args = (*(x.requires_grad_() for x in inputs.values()), padding_mask(2, 5, "left" if with_mask else "none"),
            initial.requires_grad_())
    torch.library.opcheck(torch.ops.xlstm_hf.slstm_forward.default, args)
    h, final, states, raw = torch.ops.xlstm_hf.slstm_forward(*(x.detach() for x in args[:3]), args[3], initial.detach())
    backward_args = (torch.randn_like(h), torch.randn_like(final), args[1].detach(), args[3], states, raw)
    torch.library.opcheck(torch.ops.xlstm_hf.slstm_backward.default, backward_args)


# ---- mLSTM step -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 8, 16), (3, 2, 5, 7)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_mlstm_step_kernel_matches_reference(dtype, shape, with_mask):
    inputs, state = mlstm_step_inputs(*shape, dtype)
    mask = torch.arange(shape[0]) % 2 == 0 if with_mask else None
    outputs, grads = step_outputs_and_gradients(compiled.mlstm_step, inputs, state, mask)
    outputs_ref, grads_ref = step_outputs_and_gradients(mlstm_step, inputs, state, mask)
    assert_all_close(outputs, outputs_ref, dtype)
    assert_all_close(grads, grads_ref, dtype)


@pytest.mark.parametrize("with_mask", [False, True])
def test_mlstm_step_operator_passes_opcheck(with_mask):
    inputs, state = mlstm_step_inputs(2, 2, 4, 3, torch.float32)
    mask = torch.tensor([True, False]) if with_mask else None
    args = (*(x.requires_grad_() for x in (*inputs, *state)), mask, 1e-6)
    torch.library.opcheck(torch.ops.xlstm_hf.mlstm_step.default, args)


# ---- chunkwise mLSTM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", CHUNKWISE_SHAPES)
@pytest.mark.parametrize("chunk_size", [1, 13, 64])
@pytest.mark.parametrize("kind", ["none", "left", "random"])
@pytest.mark.parametrize("with_state", [False, True])
def test_mlstm_chunkwise_kernel_matches_reference(dtype, shape, chunk_size, kind, with_state):
    """Against the float64 reference of the same chunk size: float64 to its rounding, float32 to float32's."""
    assert_chunkwise_matches_reference(compiled.mlstm_chunkwise, shape, chunk_size, kind, with_state, dtype)


def test_mlstm_chunkwise_kernel_sums_log_forget_gates_over_spans():
    assert_spans_summed(compiled.mlstm_chunkwise)


@pytest.mark.parametrize("shape, chunk_size, kind, rows",
                         [*CHUNKWISE_PACKED_CASES, ((2, 2, 130, 16, 40), 64, "right", [(0, 64, 100), (63, 64, 65)])])
def test_mlstm_chunkwise_kernel_on_packed_rows(shape, chunk_size, kind, rows):
    assert_chunkwise_packed(compiled.mlstm_chunkwise, shape, chunk_size, kind, rows)


def test_mlstm_chunkwise_kernel_ignores_the_gates_at_padded_steps():
    """Padded steps leave the state as it is, whatever their gates hold, and their gates get no gradient. (The
    heads zero the padded q, k, v before any block: docs/design.md 1.5.)"""
    inputs, _ = chunkwise_inputs(2, 2, 21, 4, 6, False)
    mask = padding_mask(2, 21, "random")
    poisoned = dict(inputs, i=inputs["i"].clone(), f=inputs["f"].clone())
    for gate in (poisoned["i"], poisoned["f"]):
        gate.transpose(1, 2)[~mask] = float("nan")  # [B, T, H] at the padded (b, t)
    h, final, grads = outputs_and_gradients(compiled.mlstm_chunkwise, poisoned, None, mask)
    h_ref, final_ref, grads_ref = outputs_and_gradients(compiled.mlstm_chunkwise, inputs, None, mask)
    assert torch.equal(h, h_ref) and all(torch.equal(s, r) for s, r in zip(final, final_ref))
    assert all(torch.equal(g, r) for g, r in zip(grads[:3], grads_ref[:3]))
    for grad in grads[3:]:
        padded = grad.transpose(1, 2)[~mask]
        assert torch.equal(padded, torch.zeros_like(padded))


def test_mlstm_chunkwise_kernel_in_half_precision_computes_in_float32():
    inputs, _ = chunkwise_inputs(2, 2, 40, 8, 8, False)
    half = {name: x.to(torch.bfloat16) for name, x in inputs.items()}
    h, final = compiled.mlstm_chunkwise(**half, chunk_size=16)
    h_ref, final_ref = ops.mlstm(**{name: x.float() for name, x in half.items()}, chunk_size=16, backend="native")
    assert h.dtype == torch.bfloat16 and all(s.dtype == torch.float32 for s in final)
    assert_close(h.float(), h_ref.to(torch.bfloat16).float(), rtol=1e-2, atol=1e-2)
    assert_matches_reference(final, final_ref, torch.float32)


def test_mlstm_chunkwise_kernel_gradcheck():
    inputs, state = chunkwise_inputs(1, 2, 7, 3, 4, True)
    mask = padding_mask(1, 7, "random")
    leaves = [x.clone().requires_grad_() for x in (*inputs.values(), *state)]

    def kernel(q, k, v, i, f, C, n, m):
        h, final = compiled.mlstm_chunkwise(q, k, v, i, f, mask=mask, initial_state=(C, n, m), chunk_size=3)
        return h, *final

    assert gradcheck(kernel, leaves)


@pytest.mark.parametrize("with_mask", [False, True])
def test_mlstm_chunkwise_operators_pass_opcheck(with_mask):
    inputs, state = chunkwise_inputs(2, 2, 9, 4, 3, True)
    mask = padding_mask(2, 9, "random") if with_mask else None
    args = (*(x.float().requires_grad_() for x in (*inputs.values(), *state)), mask)
    C, n, m = (x.float() for x in state)
    forward_args = (*args[:5], mask, *args[5:8], 4, 1e-6)
    torch.library.opcheck(torch.ops.xlstm_hf.mlstm_chunkwise_forward.default, forward_args)
    h, C_out, n_out, m_out = torch.ops.xlstm_hf.mlstm_chunkwise_forward(*(x.detach() for x in args[:5]), mask, C, n,
                                                                       m, 4, 1e-6)
    grads = tuple(torch.randn_like(x) for x in (h, C_out, n_out, m_out))
    backward_args = (*grads, *(x.detach() for x in args[:5]), mask, C, n, m, 4, 1e-6)
    torch.library.opcheck(torch.ops.xlstm_hf.mlstm_chunkwise_backward.default, backward_args)


# ---- causal convolution -------------------------------------------------------------------------------


def conv_inputs(B, T, F, K, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [randn(g, B, T, F, dtype=dtype), randn(g, B, K - 1, F, dtype=dtype), randn(g, F, 1, K, dtype=dtype),
            randn(g, F, dtype=dtype)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 7, 5, 4), (3, 2, 67, 4), (1, 13, 8, 2), (2, 1, 3, 6)])
def test_causal_conv1d_kernel_matches_reference(dtype, shape):
    inputs = conv_inputs(*shape, dtype)
    results = []
    for conv in (compiled.causal_conv1d, ops.causal_conv1d_reference):
        leaves = [x.clone().requires_grad_() for x in inputs]
        y = conv(*leaves)
        y.backward(randn(torch.Generator().manual_seed(3), *y.shape, dtype=dtype))
        results.append([y, *(leaf.grad for leaf in leaves)])
    assert_all_close(results[0], results[1], dtype)


def test_causal_conv1d_kernel_gradcheck():
    leaves = [x.requires_grad_() for x in conv_inputs(2, 5, 3, 4, torch.float64)]
    assert gradcheck(compiled.causal_conv1d, leaves)


def test_causal_conv1d_operators_pass_opcheck():
    args = [x.requires_grad_() for x in conv_inputs(2, 5, 3, 4, torch.float32)]
    torch.library.opcheck(torch.ops.xlstm_hf.causal_conv1d.default, args)
    x, history, weight, _ = conv_inputs(2, 5, 3, 4, torch.float32)
    torch.library.opcheck(torch.ops.xlstm_hf.causal_conv1d_backward.default, (torch.randn(2, 5, 3), x, history, weight))


# ---- the backend decision -----------------------------------------------------------------------------


def test_auto_leaves_the_cuda_kernels_until_they_have_run_on_a_gpu():
    assert not ops.CUDA_KERNELS_VALIDATED  # flip it, with the table of scripts/gpu_check.sh, once they have
    backend, why = ops.choose_backend("slstm", torch.device("cuda"))
    assert backend != "cuda" and "backend='cuda' opts in" in why  # the peers' kernels or the PyTorch ops


def test_auto_takes_the_compiled_kernels_on_the_cpu():
    cpu = torch.device("cpu")
    assert ops.choose_backend("slstm", cpu)[0] == "cpp"
    assert ops.choose_backend("mlstm_step", cpu)[0] == "cpp"
    assert ops.choose_backend("mlstm_chunkwise", cpu)[0] == "cpp"
    assert ops.choose_backend("mlstm_parallel", cpu)[0] == "native"
    assert ops.choose_backend("slstm", cpu, "native") == ("native", "asked for")


@pytest.mark.parametrize(("requested", "device", "error"), [
    ("fast", "cpu", ValueError),
    ("cpp", "meta", ValueError),
    ("cuda", "cpu", ValueError),
])
def test_requests_that_cannot_be_met_raise(requested, device, error):
    with pytest.raises(error, match="backend"):
        ops.choose_backend("slstm", torch.device(device), requested)


def test_switched_off_extension_falls_back_and_says_why():
    code = (
        "import torch; from xlstm_hf.ops import choose_backend; "
        "print(choose_backend('slstm', torch.device('cpu'))); "
        "choose_backend('slstm', torch.device('cpu'), 'cpp')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "XLSTM_HF_EXTENSION": "0"})
    assert "('native', 'the compiled kernels are unavailable: turned off by XLSTM_HF_EXTENSION=0')" in result.stdout
    assert result.returncode != 0 and "backend='cpp' was asked for" in result.stderr


def test_env_command_reports_every_op():
    result = subprocess.run([sys.executable, "-m", "xlstm_hf", "env"], capture_output=True, text=True, check=True)
    for op in ops.OPS:
        assert op in result.stdout


# ---- whole models on both backends -------------------------------------------------------------------


@pytest.mark.parametrize("family", ["neurips", "large"])
def test_model_on_compiled_kernels_matches_native(family):
    def make(backend):
        torch.manual_seed(0)
        config = XLSTMConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_heads=2, chunk_size=8,
                             layer_types=["slstm", "mlstm"], block_family=family, backend=backend)
        return XLSTMForCausalLM(config)

    native, compiled_model = make("native"), make("cpp")
    compiled_model.load_state_dict(native.state_dict())
    ids = torch.randint(0, 64, (2, 21), generator=torch.Generator().manual_seed(0))
    native_loss, compiled_loss = (model(ids, labels=ids).loss for model in (native, compiled_model))
    native_loss.backward()
    compiled_loss.backward()
    assert_close(compiled_loss, native_loss, rtol=1e-5, atol=1e-6)
    for (name, p_native), p_compiled in zip(native.named_parameters(), compiled_model.parameters()):
        assert_close(p_compiled.grad, p_native.grad, rtol=1e-4, atol=1e-6, msg=name)
    greedy = dict(max_new_tokens=8, do_sample=False)
    native_tokens = native.eval().generate(ids[:, :5], **greedy)
    assert torch.equal(compiled_model.eval().generate(ids[:, :5], **greedy), native_tokens)


@pytest.mark.parametrize("family", ["neurips", "large"])
def test_torch_compile_of_a_training_step_matches_eager(family):
    """The fake kernels and autograd formulas of the operators under torch.compile (inductor): the
    sLSTM and the causal convolution, forward and backward, in the blocks of both families."""
    def make():
        torch.manual_seed(0)
        config = XLSTMConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_heads=2, chunk_size=4,
                             layer_types=["mlstm", "slstm", "mlstm"], block_family=family)
        return XLSTMForCausalLM(config).train()

    ids = torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(1))
    eager, compiled_model = make(), make()
    losses = [eager(ids, labels=ids).loss, torch.compile(compiled_model)(ids, labels=ids).loss]
    for loss in losses:
        loss.backward()
    assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled_model.parameters()):
        assert_close(p_compiled.grad, p_eager.grad, rtol=1e-4, atol=1e-6, msg=name)


# ---- the compiled one-token step of whole blocks (the generation fast path) ----------------------------

DECODE_CONFIGS = {
    "neurips": dict(block_family="neurips", layer_types=["mlstm", "slstm", "mlstm"]),
    "neurips-bias-no-conv-relu2": dict(block_family="neurips", layer_types=["slstm", "mlstm"], use_bias=True,
                                       conv_kernel_size=0, slstm_conv_kernel_size=0, ffn_act="relu2"),
    "large": dict(block_family="large", layer_types=["mlstm", "slstm", "mlstm"]),
    "large-bias-layernorm-gelu": dict(block_family="large", layer_types=["mlstm", "slstm"], use_bias=True,
                                      norm_type="layernorm", ffn_act="gelu", gate_soft_cap=0.0),
}


def decode_model(name: str, backend: str) -> XLSTMForCausalLM:
    torch.manual_seed(0)
    settings = DECODE_CONFIGS[name]
    config = XLSTMConfig(vocab_size=64, hidden_size=32, num_hidden_layers=len(settings["layer_types"]), num_heads=2,
                         chunk_size=4, backend=backend, **settings)
    model = XLSTMForCausalLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


def decode_token_by_token(model: XLSTMForCausalLM, ids: torch.Tensor, prompt_length: int):
    """(logits of every position, the cache) from a prefill and then one token per call."""
    with torch.no_grad():
        output = model(ids[:, :prompt_length])
        logits = [output.logits]
        for t in range(prompt_length, ids.shape[1]):
            output = model(ids[:, t : t + 1], cache=output.cache)
            logits.append(output.logits)
    return torch.cat(logits, dim=1), output.cache


@pytest.mark.parametrize("batch", [3, 17])  # projections as dot products, and through BLAS (16 rows or more)
@pytest.mark.parametrize("name", DECODE_CONFIGS)
def test_compiled_block_step_matches_the_modules(name, batch, monkeypatch):
    compiled_model, native_model = decode_model(name, "auto"), decode_model(name, "native")
    calls = []
    decode_compiled = XLSTMModel.decode_compiled
    monkeypatch.setattr(XLSTMModel, "decode_compiled",
                        lambda model, *args: calls.append(model) or decode_compiled(model, *args))
    ids = torch.randint(0, 64, (batch, 13), generator=torch.Generator().manual_seed(1))
    logits, cache = decode_token_by_token(compiled_model, ids, prompt_length=6)
    native_logits, native_cache = decode_token_by_token(native_model, ids, prompt_length=6)
    assert len(calls) == 7  # every decoded token took the compiled step
    assert_close(logits, native_logits, rtol=1e-5, atol=1e-5)
    leaves = [t for t in torch.utils._pytree.tree_leaves(cache.layer_states) if t is not None]
    native_leaves = [t for t in torch.utils._pytree.tree_leaves(native_cache.layer_states) if t is not None]
    assert_all_close(leaves, native_leaves, torch.float32)


@pytest.mark.parametrize("name", ["neurips", "large"])
def test_decode_step_operator_passes_opcheck(name):
    model = decode_model(name, "auto")
    backbone = model.backbone
    with torch.no_grad():
        cache = model(torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(0))).cache
    states, layout = backbone._decode_states(cache)
    parameters = [None if p is None else p.detach() for p in backbone.decode_parameters()]
    args = (torch.randn(2, 32), parameters, states, layout, *backbone._decode_settings())
    torch.library.opcheck(torch.ops.xlstm_hf.decode_step.default, args)


class Adapter(torch.nn.Module):
    """A stand-in for an adapter such as LoRA wrapping a projection."""

    def __init__(self, base: torch.nn.Linear):
        super().__init__()
        self.base, self.weight, self.bias = base, base.weight, base.bias

    def forward(self, x):
        return self.base(x) + 1.0


@pytest.mark.parametrize("change", ["adapter", "hook", "global hook"])
def test_changed_modules_fall_back_to_the_modules(change):
    model = decode_model("large", "auto")
    block = model.backbone.blocks[0]
    assert model.backbone.decode_parameters() is not None
    if change == "adapter":
        block.mixer.qkvo_proj = Adapter(block.mixer.qkvo_proj)
    elif change == "hook":
        block.ffn.proj_up.register_forward_hook(lambda module, args, output: output * 2)
    else:
        handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, output: output)
    assert model.backbone.decode_parameters() is None
    if change == "global hook":
        handle.remove()
        return
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids).logits
    stepped, _ = decode_token_by_token(model, ids, prompt_length=4)
    assert_close(stepped, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change", ["module", "parameter", "in place"])
def test_compiled_step_reads_replaced_modules_and_parameters(change):
    model = decode_model("large", "auto")
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(3))
    decode_token_by_token(model, ids, prompt_length=4)  # the step has collected its parameters
    mixer = model.backbone.blocks[1].mixer
    with torch.no_grad():
        if change == "module":
            mixer.zgate = type(mixer.zgate)(32, mixer.num_heads)
            mixer.zgate.weight.normal_()
        elif change == "parameter":
            mixer.recurrent_kernel = torch.nn.Parameter(torch.randn_like(mixer.recurrent_kernel))
        else:
            mixer.bias.normal_()
        full = model(ids).logits
    stepped, _ = decode_token_by_token(model, ids, prompt_length=4)
    assert_close(stepped, full, rtol=1e-5, atol=1e-5)


def test_the_python_enums_of_the_decode_step_are_those_of_its_cpp_source():
    """BlockKind and Activation are defined twice, in decoding.py and csrc/decode_cpu.cpp: they must agree."""
    import re
    from pathlib import Path

    import xlstm_hf
    from xlstm_hf.decoding import Activation, BlockKind

    source = (Path(xlstm_hf.__file__).parent / "csrc" / "decode_cpu.cpp").read_text()

    def cpp_enum(name: str) -> list[int]:
        body = re.search(rf"enum {name} : int64_t {{(.*?)}};", source).group(1)
        return [int(value) for value in re.findall(r"=\s*(-?\d+)", body)]

    assert cpp_enum("BlockKind") == [kind.value for kind in BlockKind]
    assert cpp_enum("Activation") == [activation.value for activation in Activation]
