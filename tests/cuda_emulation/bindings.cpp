// The CUDA bindings (src/xlstm_hf/csrc/cuda_ops.cpp) compiled as they are against the emulator, their
// functions registered as the operators xlstm_hf_emulated::* instead of as the CUDA kernels of xlstm_hf::*;
// and the emulated device's controls and records.
#include <torch/library.h>

#undef TORCH_LIBRARY_IMPL
#define TORCH_LIBRARY_IMPL(ns, key, m) [[maybe_unused]] static void cuda_registrations(torch::Library& m)
#include "cuda_ops.cpp"

namespace {

using Records = std::vector<int64_t>;

// the launches since the last reset_stats, field by field, and the calls of cudaFuncSetAttribute
std::tuple<int64_t, std::vector<std::string>, Records, Records, Records> stats() {
  const emu::Stats stats = emu::stats();
  std::vector<std::string> names;
  Records errors, threads, shared;
  for (const emu::LaunchRecord& launch : stats.launches) {
    names.push_back(launch.name);
    errors.push_back(launch.error);
    threads.push_back(launch.threads);
    shared.push_back(static_cast<int64_t>(launch.shared));
  }
  return {stats.attribute_sets, names, errors, threads, shared};
}

void fail_cooperative_launches(bool fail) { emu::device().cooperative_launch_fails = fail; }

}  // namespace

TORCH_LIBRARY(xlstm_hf_emulated, m) {
  m.def("slstm_forward", &xlstm_hf::slstm_forward_cuda);
  m.def("slstm_backward", &xlstm_hf::slstm_backward_cuda);
  m.def("mlstm_step", &xlstm_hf::mlstm_step_cuda);
  m.def("mlstm_chunkwise_forward", &xlstm_hf::mlstm_chunkwise_forward_cuda);
  m.def("mlstm_chunkwise_backward", &xlstm_hf::mlstm_chunkwise_backward_cuda);
  m.def("fail_cooperative_launches", &fail_cooperative_launches);
  m.def("reset_stats", &emu::reset_stats);
  m.def("stats", &stats);
}
