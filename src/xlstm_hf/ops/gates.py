"""Gate preparation shared by every form of the recurrences.

Padding (docs/design.md 1.5) is an identity step: for the mLSTM that is `log f = 0` and `i = -inf`. A true
`-inf` turns `-inf - (-inf)` into NaN inside the stabiliser, so a large negative finite value stands in.
"""

import torch
import torch.nn.functional as F

# log-space "minus infinity": exp() of it and of its differences with finite values is exactly 0
MASKED_LOG_GATE = -1e30

# The mLSTM normaliser's floor exp(-m) (docs/design.md 1.1) is capped at exp(80) (about 5.5e34). Uncapped it
# overflows float32 below m = -88.7 (input gates below about -89 over a forgotten memory): the output is
# still 0 = C^T q / inf, but the gradient of exp there is 0 * inf = NaN. Above the cap the floor outweighs
# |n^T q| (n in stabilised units is at most steps * |k|) by far, so the cap only leaves h at 1.8e-35 times its
# numerator where the exact value, exp(m) times it, is smaller still.
LOG_FLOOR_CAP = 80.0


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32, or in float64 if it already is (so that gradcheck runs in float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def mlstm_log_gates(
    i: torch.Tensor, f: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input-gate and log forget-gate pre-activations in float32 (or wider), padded steps made identity
    steps.

    `mask` (True at real steps) must broadcast against `i` and `f`.
    """
    i = at_least_float32(i)
    log_f = F.logsigmoid(at_least_float32(f))
    if mask is not None:
        i = i.masked_fill(~mask, MASKED_LOG_GATE)
        log_f = log_f.masked_fill(~mask, 0.0)
    return i, log_f


def normaliser_floor(m: torch.Tensor) -> torch.Tensor:
    """exp(-m), the floor of the mLSTM normaliser, capped at exp(LOG_FLOOR_CAP) so that it stays finite."""
    return torch.exp(torch.clamp(-m, max=LOG_FLOOR_CAP))
