"""The CUDA kernels of src/xlstm_hf/csrc/cuda on the CPU: stand-in CUDA headers (include/, emu.h first), the
rewrite of the launch syntax (rewrite.py), the emulated device (runtime.cpp), the CUDA bindings registered
as torch operators (bindings.cpp) and wrapped like the compiled ones (ops.py), a driver for the builds
under the sanitizers (driver.cpp), and the builds (build.py). tests/test_cuda_emulation.py runs them."""
