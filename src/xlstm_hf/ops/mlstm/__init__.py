"""mLSTM recurrences in plain PyTorch: the float32 references every fast path is held to."""

from .chunkwise import MLSTMState, mlstm_chunkwise, mlstm_parallel, zero_mlstm_state
from .recurrent import mlstm_recurrent, mlstm_step

__all__ = [
    "MLSTMState",
    "mlstm_chunkwise",
    "mlstm_parallel",
    "mlstm_recurrent",
    "mlstm_step",
    "zero_mlstm_state",
]
