"""The peers' kernels behind our calling convention (`xlstm_hf/ops/peers.py`) and the choice that runs them.

Each adapter runs on the CPU through the peer's own PyTorch backend (mlstm_kernels' "chunkwise--native_custbw",
the twin of its Triton chunkwise kernels, and its "native" step; flashrnn's "vanilla"), in float32, against our
reference in float64: outputs, final states, padding and initial states, with tolerances of the order of our own
float32 error, which a deliberately broken adapter fails. The peers run only where autograd does not record the
call: the tests of their backwards say why. The choice (`choose_backend`) is tested on the CPU by asking it about
a CUDA device with the packages' status faked. The Triton kernels themselves run in Triton's interpreter in the
slow tests (`pytest -m slow`; Triton < 3.9).
"""

import ast
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

import xlstm_hf
from xlstm_hf import ops
from xlstm_hf.cli import backend_rows, peer_report
from xlstm_hf.input_checks import graph_safe
from xlstm_hf.ops import choose_backend, peers
from xlstm_hf.ops.gates import MASKED_LOG_GATE
from xlstm_hf.ops.mlstm import mlstm_chunkwise, mlstm_step
from xlstm_hf.ops.slstm import slstm_recurrent

pytestmark = pytest.mark.usefixtures("single_thread")

CUDA = torch.device("cuda")
MLSTM_KERNEL = "chunkwise--native_custbw"  # the PyTorch twin of the Triton chunkwise kernels
# float32 against float64, relative to 1 + |expected|: about 100 float32 ulps (the errors seen: h 8e-6, states 2e-6,
# gradients 1e-5; those of our own float32 reference: h 5e-6, states 8e-7)
TOLERANCE = {"atol": 2e-5, "rtol": 2e-5}


def needs(package: str):
    """Skip where `package` is missing; in CI (the test extra) it is installed."""
    module = {"mlstm_kernels": "mlstm_kernels.torch"}.get(package, package)
    return pytest.importorskip(module, reason=f"{package} is not installed (pip install {package}; test extra)")


def randn(generator, *shape, scale=1.0, shift=0.0):
    return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale + shift


def mlstm_inputs(B=2, H=2, T=37, Dqk=16, Dv=16, seed=0):
    """float64 q, k, v ~ N(0, 1), i ~ N(0, 2), f ~ N(3, 2)."""
    g = torch.Generator().manual_seed(seed)
    return {"q": randn(g, B, H, T, Dqk), "k": randn(g, B, H, T, Dqk), "v": randn(g, B, H, T, Dv),
            "i": randn(g, B, H, T, scale=2.0), "f": randn(g, B, H, T, scale=2.0, shift=3.0)}


def mlstm_state(B=2, H=2, Dqk=16, Dv=16, seed=100):
    """A non-empty float64 memory (C, n, m)."""
    g = torch.Generator().manual_seed(seed)
    return randn(g, B, H, Dqk, Dv), randn(g, B, H, Dqk), randn(g, B, H)


def slstm_inputs(B=3, H=2, T=23, D=16, seed=0):
    """float64 gates_x [B, H, T, 4, D] with forget bias +3, recurrent kernel [H, D, 4, D], bias [H, 4, D]."""
    g = torch.Generator().manual_seed(seed)
    gates_x = randn(g, B, H, T, 4, D)
    gates_x[:, :, :, 1] += 3.0
    return {"gates_x": gates_x, "recurrent_kernel": randn(g, H, D, 4, D, scale=D**-0.5),
            "bias": randn(g, H, 4, D, scale=0.5)}


def slstm_state(B=3, H=2, D=16, seed=100):
    """A float64 state (h, c, n, m) with n in [1, 2], and row 0 empty (n = 0: the stabiliser restarts there)."""
    g = torch.Generator().manual_seed(seed)
    h, c, m = randn(g, B, H, D), randn(g, B, H, D), randn(g, B, H, D)
    n = 1 + torch.rand(B, H, D, generator=g, dtype=torch.float64)
    h[0], c[0], n[0], m[0] = 0.0, 0.0, 0.0, 0.0
    return h, c, n, m


def as_float32(tensors):
    if isinstance(tensors, dict):
        return {name: x.float() for name, x in tensors.items()}
    return None if tensors is None else tuple(x.float() for x in tensors)


def padding_mask(B=2, T=37):
    """Row 0 left-padded by 5 steps, row 1 right-padded by 4 and with a hole."""
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, :5] = False
    mask[1, -4:] = False
    mask[1, 10:12] = False
    return mask


def assert_matches(actual, expected):
    """float32 results against float64 ones, within TOLERANCE."""
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape
        assert_close(a.double(), e, **TOLERANCE)


def gradients(fn, inputs, outputs=lambda h, state: (h,)):
    """Gradients w.r.t. `inputs` of a fixed random linear function of `outputs` (of h and the final state)."""
    leaves = {name: x.detach().clone().requires_grad_() for name, x in inputs.items()}
    g = torch.Generator().manual_seed(1234)
    loss = sum((out * torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)).sum()
               for out in outputs(*fn(**leaves)))
    return torch.autograd.grad(loss, list(leaves.values()))


# ---- mLSTM: mlstm_kernels' chunkwise kernel -------------------------------------------------------------


@pytest.mark.parametrize("T", [2, 16, 37, 130])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "initial-state"])
def test_mlstm_chunkwise_adapter_matches_reference(T, padded, with_state, kernel=MLSTM_KERNEL):
    needs("mlstm_kernels")
    inputs, state = mlstm_inputs(T=T), mlstm_state() if with_state else None
    mask = padding_mask(T=T) if padded else None
    h, final = mlstm_chunkwise(**inputs, mask=mask, initial_state=state)
    h_peer, final_peer = peers.mlstm_chunkwise(**as_float32(inputs), mask=mask, initial_state=as_float32(state),
                                               kernel=kernel)
    assert h_peer.dtype == torch.float32 and all(s.dtype == torch.float32 for s in final_peer)
    assert_matches((h_peer, *final_peer), (h, *final))


def test_mlstm_chunkwise_adapter_padded_row_keeps_its_state_exactly():
    """A row padded throughout leaves the state bit for bit as it came in, and outputs zeros."""
    needs("mlstm_kernels")
    inputs, state = as_float32(mlstm_inputs(T=20)), as_float32(mlstm_state())
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1] = False
    h, final = peers.mlstm_chunkwise(**inputs, mask=mask, initial_state=state, kernel=MLSTM_KERNEL)
    assert torch.equal(h[1], torch.zeros_like(h[1]))
    for s, s0 in zip(final, state):
        assert torch.equal(s[1], s0[1])


def test_mlstm_kernels_backward_is_that_of_h_normalised_per_head():
    """Why calls that autograd records run our ops: mlstm_kernels' chunkwise backward (here the PyTorch twin of
    the Triton one) gives the gradient of h / rms(h) per head and step (which the layers' norms would make
    equivalent), not that of h."""
    from mlstm_kernels.torch import get_mlstm_kernel

    needs("mlstm_kernels")
    kernel = get_mlstm_kernel(MLSTM_KERNEL)

    def peer(q, k, v, i, f):
        return kernel(q, k, v, i, f, return_last_states=True, chunk_size=64)

    def normalised(fn):
        def run(**inputs):
            h, state = fn(**inputs)
            return h * h.pow(2).mean(-1, keepdim=True).rsqrt(), state
        return run

    inputs = mlstm_inputs(T=64)
    assert_matches(gradients(normalised(peer), as_float32(inputs)), gradients(normalised(mlstm_chunkwise), inputs))
    with pytest.raises(AssertionError):
        assert_matches(gradients(peer, as_float32(inputs)), gradients(mlstm_chunkwise, inputs))


def test_mlstm_chunkwise_adapter_with_swapped_gates_fails(monkeypatch):
    """A broken adapter (input and forget gates swapped on the way in) fails the comparison."""
    needs("mlstm_kernels")
    adapter = peers.mlstm_chunkwise
    monkeypatch.setattr(peers, "mlstm_chunkwise", lambda q, k, v, i, f, **kw: adapter(q, k, v, f, i, **kw))
    with pytest.raises(AssertionError):
        test_mlstm_chunkwise_adapter_matches_reference(T=37, padded=False, with_state=False)


# ---- mLSTM: mlstm_kernels' step kernel ------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_mlstm_step_adapter_matches_reference(padded, kernel="native"):
    needs("mlstm_kernels")
    inputs = {name: x[:, :, 0] for name, x in mlstm_inputs(T=1).items()}
    state = mlstm_state()
    mask = torch.tensor([True, False]) if padded else None
    h, final = mlstm_step(**inputs, state=state, mask=mask)
    h_peer, final_peer = peers.mlstm_step(**as_float32(inputs), state=as_float32(state), mask=mask, kernel=kernel)
    assert_matches((h_peer, *final_peer), (h, *final))
    if padded:
        assert torch.equal(h_peer[1], torch.zeros_like(h_peer[1]))
        assert all(torch.equal(s[1], s0[1].float()) for s, s0 in zip(final_peer, state))


# ---- sLSTM: flashrnn --------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "initial-state"])
def test_slstm_adapter_matches_reference(with_state, backend="vanilla"):
    """Outputs and final states, from a zero state or one whose row 0 is empty (n = 0: the stabiliser restarts)."""
    needs("flashrnn")
    inputs, state = slstm_inputs(), slstm_state() if with_state else None
    h, final = slstm_recurrent(**inputs, initial_state=state)
    h_peer, final_peer = peers.slstm(**as_float32(inputs), initial_state=as_float32(state), backend=backend)
    assert_matches((h_peer, *final_peer), (h, *final))


def test_slstm_adapter_with_swapped_gates_fails(monkeypatch):
    """A broken adapter (gates i and f swapped in every input) fails the comparison."""
    needs("flashrnn")
    adapter, swap = peers.slstm, [1, 0, 2, 3]
    monkeypatch.setattr(peers, "slstm", lambda gates_x, recurrent_kernel, bias, **kwargs: adapter(
        gates_x[..., swap, :], recurrent_kernel[..., swap, :], bias[:, swap], **kwargs))
    with pytest.raises(AssertionError):
        test_slstm_adapter_matches_reference(with_state=True)


def test_slstm_adapter_refuses_a_mask():
    needs("flashrnn")
    inputs = as_float32(slstm_inputs())
    with pytest.raises(ValueError, match="mask: flashrnn has no padding"):
        peers.slstm(**inputs, mask=torch.ones(3, 23, dtype=torch.bool), backend="vanilla")


def test_adapters_refuse_autograd():
    needs("mlstm_kernels")
    needs("flashrnn")
    inputs = {name: x.float().requires_grad_() for name, x in mlstm_inputs(T=16).items()}
    with pytest.raises(RuntimeError, match="leaves out the normaliser's gradient"):
        peers.mlstm_chunkwise(**inputs, kernel=MLSTM_KERNEL)
    step_inputs = {name: x[:, :, 0] for name, x in inputs.items()}
    with pytest.raises(RuntimeError, match=r"triton of mlstm_kernels has no exact backward \(it has none\)"):
        peers.mlstm_step(**step_inputs, state=as_float32(mlstm_state()), kernel="native")
    slstm_args = {name: x.float().requires_grad_() for name, x in slstm_inputs().items()}
    with pytest.raises(RuntimeError, match="reach the final c, n and m wrong"):
        peers.slstm(**slstm_args, backend="vanilla")


# ---- the choice ---------------------------------------------------------------------------------------------


@pytest.fixture
def peers_installed(monkeypatch):
    """Both peers usable, as on a GPU machine with them installed."""
    monkeypatch.setattr(peers, "package_status", lambda package: (True, f"{package} 9.9 with Triton 3.7.1"))


@pytest.fixture
def peers_missing(monkeypatch):
    monkeypatch.setattr(peers, "package_status", lambda package: (False, f"{package} is not installed (pip install)"))


PEER_OPS = ["mlstm_chunkwise", "mlstm_step", "slstm"]


@pytest.mark.parametrize("op", PEER_OPS)
def test_auto_on_a_gpu_takes_the_peer_kernel(peers_installed, op):
    backend, why = choose_backend(op, CUDA, "auto", peers.Call())
    assert backend == "peers"
    assert peers.GPU_KERNELS[op][1] in why and "have not run on a GPU" in why


@pytest.mark.parametrize("op", PEER_OPS)
def test_auto_on_a_gpu_without_the_peer_runs_pytorch(peers_missing, op):
    backend, why = choose_backend(op, CUDA, "auto")
    assert backend == "native" and "pip install" in why


def test_auto_on_a_gpu_takes_our_validated_kernels_first(peers_installed, monkeypatch):
    monkeypatch.setattr(ops, "CUDA_KERNELS_VALIDATED", True)
    monkeypatch.setattr(ops, "extension_status", lambda: (True, "built and loaded"))
    monkeypatch.setattr(ops, "extension_has_cuda", lambda: True)
    assert choose_backend("slstm", CUDA)[0] == "cuda"
    monkeypatch.setattr(ops, "extension_has_cuda", lambda: False)  # validated, but built without CUDA here
    backend, why = choose_backend("slstm", CUDA)
    assert backend == "peers" and "built without CUDA" in why


@pytest.mark.parametrize(("op", "call", "reason"), [
    ("slstm", peers.Call(padded=True), "has no padding mask"),
    ("slstm", peers.Call(option="bf16_rounding"), "has no bf16_rounding"),
    ("slstm", peers.Call(option="packed rows"), "has no packed rows"),
    ("mlstm_chunkwise", peers.Call(forget=torch.tensor([3.0, MASKED_LOG_GATE])), "has no packed rows (f = -1e30"),
    ("slstm", peers.Call(head_dim=48), "power of 2"),
    ("slstm", peers.Call(head_dim=256), "up to 128 units per head"),
    ("slstm", peers.Call(grad=True), "the final c, n and m wrong), and autograd records the call"),
    ("mlstm_step", peers.Call(grad=True), "(it has none)"),
    ("mlstm_chunkwise", peers.Call(grad=True), "leaves out the normaliser's gradient"),
    ("mlstm_chunkwise", peers.Call(dtype=torch.float64), "torch.float64"),
    ("mlstm_chunkwise", peers.Call(head_dim=8), "at least 16 units"),
])
def test_auto_runs_pytorch_where_the_peer_cannot_run_the_call(peers_installed, op, call, reason):
    backend, why = choose_backend(op, CUDA, "auto", call)
    assert backend == "native" and reason in why
    with pytest.raises(RuntimeError, match="backend='peers' was asked for"):
        choose_backend(op, CUDA, "peers", call)


def test_no_peer_runs_traced_or_in_graph_capture(peers_installed):
    with graph_safe():
        backend, why = choose_backend("slstm", CUDA, "auto", peers.Call())
    assert backend == "native" and "CUDA-graph capture" in why


def test_peers_run_padded_mlstm_calls(peers_installed):
    """Padding is exact in the mLSTM adapters."""
    unpacked = torch.tensor([3.0, -40.0])  # forget pre-activations without a packed-row start
    assert choose_backend("mlstm_chunkwise", CUDA, "auto", peers.Call(padded=True, forget=unpacked))[0] == "peers"
    assert choose_backend("mlstm_step", CUDA, "auto", peers.Call(padded=True))[0] == "peers"


def test_explicit_peers_request(peers_installed, monkeypatch):
    assert choose_backend("slstm", CUDA, "peers")[0] == "peers"
    assert choose_backend("causal_conv1d", CUDA, "peers") == ("native", "no peer has a kernel for this op")
    with pytest.raises(ValueError, match="backend='peers' runs GPU kernels, not on cpu"):
        choose_backend("slstm", torch.device("cpu"), "peers")
    monkeypatch.setattr(peers, "package_status", lambda package: (False, f"{package} is not installed (pip install)"))
    with pytest.raises(RuntimeError, match="flashrnn is not installed"):
        choose_backend("slstm", CUDA, "peers")


def test_the_peers_are_imported_lazily():
    """No module of the package imports a peer (or Triton) at its top level: only their adapters do, when run."""
    for path in Path(xlstm_hf.__file__).parent.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            assert not {name.split(".")[0] for name in names} & {"mlstm_kernels", "flashrnn", "triton"}, path


def test_the_config_accepts_peers():
    from xlstm_hf import XLSTMConfig

    assert XLSTMConfig(backend="peers").backend == "peers"
    with pytest.raises(ValueError, match="'peers'"):
        XLSTMConfig(backend="flashrnn")


def test_env_reports_the_gpu_choice_and_the_peers(peers_installed):
    """`xlstm-hf env`, its CUDA rows (printed also without a GPU) and its peers (the CPU rows build the kernels)."""
    rows = {row.split()[0]: row for row in backend_rows(CUDA)}
    assert rows["slstm"].split()[1:3] == ["cuda", "peers"] and "flashrnn 9.9" in rows["slstm"]
    assert rows["causal_conv1d"].split()[1:3] == ["cuda", "native"]
    report = "\n".join(peer_report())
    for package, licence in peers.LICENCES.items():
        assert f"{package} 9.9 with Triton 3.7.1 ({licence})" in report
    assert "slstm -> triton_fused" in report and "mlstm_chunkwise -> chunkwise--triton_xl_chunk" in report


def test_mlstm_kernels_lose_packed_row_starts():
    """Why packed rows run our ops: a start (f = -1e30) is lost in the kernel's differences of running sums."""
    needs("mlstm_kernels")
    inputs = mlstm_inputs(T=37)
    inputs["f"][:, :, [10, 20]] = MASKED_LOG_GATE
    h, final = mlstm_chunkwise(**inputs)
    h_peer, final_peer = peers.mlstm_chunkwise(**as_float32(inputs), kernel=MLSTM_KERNEL)
    assert_matches((h_peer[:, :, :10],), (h[:, :, :10],))
    with pytest.raises(AssertionError):
        assert_matches((h_peer, *final_peer), (h, *final))


def test_a_model_runs_through_the_peers_where_chosen(monkeypatch):
    """The dispatch of `mlstm` and `slstm`: a model whose choice is faked to the peers (their PyTorch twins
    here) gives the outputs of the PyTorch ops, with padding and packed rows (which run natively where the peer
    cannot run them)."""
    needs("mlstm_kernels")
    needs("flashrnn")
    from xlstm_hf import XLSTMConfig, XLSTMModel

    config = XLSTMConfig(vocab_size=50, hidden_size=64, num_heads=2, num_hidden_layers=3,
                         layer_types=["mlstm", "slstm", "mlstm"], backend="native")
    model = XLSTMModel(config).eval()
    ids = torch.randint(0, 50, (2, 21), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones(2, 21, dtype=torch.long)
    attention_mask[1, :6] = 0
    packed = torch.cat([torch.arange(8), torch.arange(13)]).expand(2, 21)  # position_ids of two sequences per row
    calls = [{}, {"attention_mask": attention_mask}, {"position_ids": packed}]
    with torch.no_grad():
        expected = [model(ids, **kwargs).last_hidden_state for kwargs in calls]

    chosen = []
    real_choice, real_call = ops.choose_backend, ops._call

    def fake_choice(op, device, requested="auto", call=None):
        if op in PEER_OPS and not peers._limit(op, call):
            chosen.append((op, call.padded, call.option))
            return "peers", "faked"
        return real_choice(op, device, "native", call)

    monkeypatch.setattr(ops, "choose_backend", fake_choice)
    monkeypatch.setattr(ops, "_call", lambda device, *args, **kwargs: real_call(CUDA, *args, **kwargs))
    monkeypatch.setattr(ops, "peer_mlstm_chunkwise", partial(peers.mlstm_chunkwise, kernel=MLSTM_KERNEL))
    monkeypatch.setitem(ops._PEER_KERNELS, "slstm", partial(peers.slstm, backend="vanilla"))
    with torch.no_grad():
        actual = [model(ids, **kwargs).last_hidden_state for kwargs in calls]
    assert sorted(set(chosen)) == [("mlstm_chunkwise", False, None), ("mlstm_chunkwise", True, None),
                                   ("slstm", False, None)]
    for a, e in zip(actual, expected):
        assert_close(a, e, atol=1e-4, rtol=1e-4)


# ---- the Triton kernels, in Triton's interpreter (opt-in: pytest -m slow) ----------------------------------


def triton_interpretable() -> str | None:
    """Why the Triton kernels cannot run in the interpreter here, or None."""
    try:
        import triton
    except ImportError:
        return "Triton is not installed"
    if tuple(int(part) for part in triton.__version__.split(".")[:2]) >= (3, 9):
        return f"the peers' Triton kernels need Triton < 3.9 (block pointers), not {triton.__version__}"
    return None


interpreted = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="runs in the subprocess of "
                                 "test_triton_kernels_in_the_interpreter (TRITON_INTERPRET=1 before Triton loads)")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="the interpreted tests run directly here")
def test_triton_kernels_in_the_interpreter():
    """The adapters with the Triton kernels that run on GPUs, in Triton's interpreter on the CPU."""
    needs("mlstm_kernels")
    needs("flashrnn")
    if (why := triton_interpretable()) is not None:
        pytest.skip(why)
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-m", "slow", "-k", "interpreted", "-q", "-p", "no:cacheprovider"],
        env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "5 passed" in run.stdout, run.stdout[-2000:]
    print(f"interpreted Triton kernels: {time.perf_counter() - start:.0f} s")


@pytest.mark.slow
@interpreted
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_interpreted_mlstm_chunkwise_triton_xl_chunk(padded):
    test_mlstm_chunkwise_adapter_matches_reference(T=130, padded=padded, with_state=True,
                                                   kernel="chunkwise--triton_xl_chunk")


@pytest.mark.slow
@interpreted
def test_interpreted_mlstm_step_triton():
    test_mlstm_step_adapter_matches_reference(padded=True, kernel="triton")


@pytest.mark.slow
@interpreted
def test_interpreted_slstm_triton_fused():
    test_slstm_adapter_matches_reference(with_state=True, backend="triton_fused")


@pytest.mark.slow
@interpreted
def test_interpreted_slstm_triton_fused_backward(monkeypatch):
    """Why calls that autograd records run our ops: flashrnn's Triton backward is right for the gradients that
    reach h, wrong for those that reach the final c, n and m."""
    monkeypatch.setattr(peers, "_refuse_autograd", lambda *args: None)
    inputs, state = slstm_inputs(T=9), slstm_state()
    peer = partial(peers.slstm, initial_state=as_float32(state), backend="triton_fused")
    reference = partial(slstm_recurrent, initial_state=state)

    def through_h(h, final):
        return h, final[0]

    def through_cnm(h, final):
        return final[1:]

    assert_matches(gradients(peer, as_float32(inputs), through_h), gradients(reference, inputs, through_h))
    with pytest.raises(AssertionError):
        assert_matches(gradients(peer, as_float32(inputs), through_cnm), gradients(reference, inputs, through_cnm))
