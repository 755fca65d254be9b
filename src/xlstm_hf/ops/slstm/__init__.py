"""sLSTM recurrence in plain PyTorch: the float32 reference every fast path is held to."""

from .recurrent import SLSTMState, slstm_recurrent, slstm_step, zero_slstm_state

__all__ = ["SLSTMState", "slstm_recurrent", "slstm_step", "zero_slstm_state"]
