// The current stream of the CUDA bindings: the emulator's launches run synchronously, on no stream.
#pragma once

#include <cuda_runtime.h>

namespace c10::cuda {

inline cudaStream_t getCurrentCUDAStream() { return nullptr; }

}  // namespace c10::cuda
