// The schemas of the xlstm_hf operators. Kernels register per device in their own files; the
// fake (meta) kernels and the autograd formulas are registered from Python (src/xlstm_hf/ops/compiled.py).
#include <torch/library.h>

TORCH_LIBRARY(xlstm_hf, m) {
  // sLSTM over a sequence: -> (h [B, H, T, D], final states [4, B, H, D], and for the backward: all states
  // [4, B, H, T + 1, D] and the gate pre-activations [B, H, T, 4, D])
  m.def("slstm_forward(Tensor gates_x, Tensor recurrent_kernel, Tensor bias, Tensor? mask, Tensor initial_states)"
        " -> (Tensor, Tensor, Tensor, Tensor)");
  // -> (grad gates_x, grad recurrent_kernel, grad bias, grad initial_states)
  m.def("slstm_backward(Tensor grad_h, Tensor grad_final_states, Tensor recurrent_kernel, Tensor? mask,"
        " Tensor states, Tensor raw) -> (Tensor, Tensor, Tensor, Tensor)");
  // depthwise causal convolution: x [B, T, F] after history [B, K - 1, F], weight [F, 1, K], bias [F] -> [B, T, F]
  m.def("causal_conv1d(Tensor x, Tensor history, Tensor weight, Tensor bias) -> Tensor");
  // -> (grad x, grad history, grad weight, grad bias)
  m.def("causal_conv1d_backward(Tensor grad_y, Tensor x, Tensor history, Tensor weight)"
        " -> (Tensor, Tensor, Tensor, Tensor)");
  // one mLSTM step for all heads: -> (h [B, H, Dv], C [B, H, Dqk, Dv], n [B, H, Dqk], m [B, H])
  m.def("mlstm_step(Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, Tensor C, Tensor n, Tensor m, Tensor? mask,"
        " float eps) -> (Tensor, Tensor, Tensor, Tensor)");
  // the chunkwise mLSTM forward (CPU and CUDA): q, k [B, H, T, Dqk], v [B, H, T, Dv], i, f [B, H, T], the
  // initial state C, n, m -> (h [B, H, T, Dv], the final C, n, m)
  m.def("mlstm_chunkwise_forward(Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, Tensor? mask, Tensor C,"
        " Tensor n, Tensor m, int chunk_size, float eps) -> (Tensor, Tensor, Tensor, Tensor)");
  // its backward from the gradients of h and of the final state -> (dq, dk, dv, di, df, dC, dn, dm)
  m.def("mlstm_chunkwise_backward(Tensor grad_h, Tensor grad_C, Tensor grad_n, Tensor grad_m, Tensor q, Tensor k,"
        " Tensor v, Tensor i, Tensor f, Tensor? mask, Tensor C, Tensor n, Tensor m, int chunk_size, float eps)"
        " -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // one token through the block stack and the out norm (inference): hidden [B, hidden] -> (hidden, the new
  // states); parameters and states in the order of src/xlstm_hf/modeling_xlstm.py (decode_parameters),
  // layout: (kind, feed-forward activation, number of state tensors) per block
  m.def("decode_step(Tensor hidden, Tensor?[] params, Tensor[] state, int[] layout, float[] floats, int[] ints)"
        " -> (Tensor, Tensor[])");
}
