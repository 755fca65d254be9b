// The emulator's runtime (include/emu.h): a pool of OS threads that run the CUDA threads, the barriers,
// the shared memory of each block, the checks a launch passes on a GPU, and the emulated device's answers
// to the runtime API.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <thread>

#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(address, size) ((void)(address), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(address, size) ((void)(address), (void)(size))
#endif

thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

namespace emu {
namespace {

constexpr std::size_t kStaticSharedLimit = 48 * 1024;  // per block, fixed at compile time on the GPU
constexpr int kDefaultDynamicSharedLimit = 48 * 1024;  // unless cudaFuncSetAttribute raised it
constexpr unsigned kWarp = 32;
constexpr int kDeadlockSeconds = 60;

std::atomic<std::uint64_t> progress{0};  // barrier episodes completed and threads finished
std::atomic<bool> launch_running{false};

// A barrier over a set of threads, written with atomics only (so that ThreadSanitizer sees exactly the order
// it creates): an episode completes when every thread still running has arrived; a thread that exits is no
// longer awaited. State: generation (16 bits) | threads still running (24) | still to arrive (24).
class Barrier {
 public:
  void reset(std::uint64_t threads) {
    state_.store(pack(0, threads, threads));
    wake_.store(0);
  }

  void arrive_and_wait() {
    std::uint64_t state = state_.load(std::memory_order_relaxed), next;
    do {
      next = remaining(state) == 1 ? pack(generation(state) + 1, running(state), running(state)) : state - 1;
    } while (!state_.compare_exchange_weak(state, next, std::memory_order_acq_rel, std::memory_order_relaxed));
    const std::uint32_t episode = generation(state);
    if (remaining(state) == 1) {
      open(generation(next));
      return;
    }
    while (wake_.load(std::memory_order_acquire) == episode) wake_.wait(episode, std::memory_order_acquire);
  }

  void leave() {
    std::uint64_t state = state_.load(std::memory_order_relaxed), next;
    bool completes;
    do {
      const std::uint64_t left = running(state) - 1;
      completes = remaining(state) == 1 && left > 0;  // the others all wait: release them
      next = completes ? pack(generation(state) + 1, left, left) : pack(generation(state), left, remaining(state) - 1);
    } while (!state_.compare_exchange_weak(state, next, std::memory_order_acq_rel, std::memory_order_relaxed));
    if (completes) open(generation(next));
  }

  std::uint64_t running() const { return running(state_.load(std::memory_order_acquire)); }

 private:
  static constexpr std::uint64_t kField = (1u << 24) - 1;
  static std::uint64_t pack(std::uint64_t generation, std::uint64_t running, std::uint64_t remaining) {
    return (generation & 0xffff) << 48 | running << 24 | remaining;
  }
  static std::uint32_t generation(std::uint64_t state) { return static_cast<std::uint32_t>(state >> 48); }
  static std::uint64_t running(std::uint64_t state) { return state >> 24 & kField; }
  static std::uint64_t remaining(std::uint64_t state) { return state & kField; }

  void open(std::uint32_t generation) {
    progress.fetch_add(1, std::memory_order_relaxed);
    wake_.store(generation, std::memory_order_release);
    wake_.notify_all();
  }

  std::atomic<std::uint64_t> state_{0};
  std::atomic<std::uint32_t> wake_{0};
};

// Bytes aligned to `alignment` and to no more (a kernel that needs more alignment than it declares fails
// the wmma checks), filled with NaN; the bytes before them are poisoned under AddressSanitizer.
class Allocation {
 public:
  Allocation(std::size_t bytes, std::size_t alignment)
      : bytes_(bytes), alignment_(alignment),
        base_(static_cast<unsigned char*>(::operator new(bytes + alignment, std::align_val_t(2 * alignment)))) {
    std::memset(data(), 0xff, bytes);
    ASAN_POISON_MEMORY_REGION(base_, alignment_);
  }
  Allocation(const Allocation&) = delete;
  ~Allocation() {
    ASAN_UNPOISON_MEMORY_REGION(base_, alignment_);
    ::operator delete(base_, std::align_val_t(2 * alignment_));
  }
  unsigned char* data() const { return base_ + alignment_; }
  std::size_t bytes() const { return bytes_; }
  std::size_t alignment() const { return alignment_; }

 private:
  std::size_t bytes_, alignment_;
  unsigned char* base_;
};

// What one CUDA thread did, compared across the threads that must agree
struct Counts {
  unsigned barriers = 0, warp_collectives = 0, grid_syncs = 0;
};

struct Block {
  Block(dim3 index_, unsigned threads_, std::size_t dynamic_bytes)
      : index{index_.x, index_.y, index_.z}, threads(threads_), warps((threads_ + kWarp - 1) / kWarp),
        lanes(warps.size()), counts(threads_), dynamic(dynamic_bytes, 16) {
    barrier.reset(threads);
    for (std::size_t w = 0; w < warps.size(); ++w) warps[w].reset(std::min(kWarp, threads - unsigned(w) * kWarp));
  }
  uint3 index;
  unsigned threads;
  Barrier barrier;
  std::vector<Barrier> warps;
  std::vector<std::array<std::uint64_t, kWarp>> lanes;  // the values a warp exchanges
  std::vector<Counts> counts;
  std::mutex slots_mutex;
  std::deque<Allocation> slots;  // the static __shared__ variables, in declaration order
  std::size_t static_bytes = 0;
  Allocation dynamic;
};

struct Launch {
  LaunchConfig config;
  unsigned threads_per_block;
  Barrier grid;  // of a cooperative launch
  std::mutex mutex;
  cudaError_t error = cudaSuccess;
  std::string message;
};

struct Self {
  Launch* launch = nullptr;
  Block* block = nullptr;
  unsigned rank = 0, slot = 0;
  Counts counts;
};
thread_local Self self;

thread_local cudaError_t last_error = cudaSuccess;
thread_local std::string last_message;

std::mutex state_mutex;  // guards the attributes and the stats
std::map<const void*, int> dynamic_shared_limits;
Stats recorded;

void report(Launch& launch, cudaError_t error, const std::string& message) {
  const std::lock_guard lock(launch.mutex);
  if (launch.error != cudaSuccess) return;  // the first failure tells
  launch.error = error;
  launch.message = message;
}

std::string where() {
  char text[96];
  std::snprintf(text, sizeof(text), "block (%u, %u, %u) thread %u: ", blockIdx.x, blockIdx.y, blockIdx.z, self.rank);
  return text;
}

// A pool of OS threads, grown to the largest launch; job(i) runs on worker i, i < count.
class Pool {
 public:
  void run(unsigned count, const std::function<void(unsigned)>& job) {
    while (workers_.size() < count) {
      workers_.push_back(std::make_unique<Worker>());
      Worker& worker = *workers_.back();
      worker.index = static_cast<unsigned>(workers_.size() - 1);
      std::thread([this, &worker] { work(worker); }).detach();
    }
    job_ = &job;
    pending_.store(count, std::memory_order_relaxed);
    for (unsigned i = 0; i < count; ++i) {
      workers_[i]->start.fetch_add(1, std::memory_order_release);
      workers_[i]->start.notify_one();
    }
    for (int left; (left = pending_.load(std::memory_order_acquire)) != 0;) pending_.wait(left);
  }

 private:
  struct Worker {
    std::atomic<std::uint32_t> start{0};
    unsigned index = 0;
  };

  void work(Worker& worker) {
    for (std::uint32_t seen = 0;; ++seen) {
      while (worker.start.load(std::memory_order_acquire) == seen) worker.start.wait(seen);
      (*job_)(worker.index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
    }
  }

  std::vector<std::unique_ptr<Worker>> workers_;
  const std::function<void(unsigned)>* job_ = nullptr;
  std::atomic<int> pending_{0};
};

Pool& pool() {
  static Pool* instance = new Pool;  // its threads live as long as the process
  return *instance;
}

void run_thread(Launch& launch, Block& block, unsigned rank, const std::function<void()>& thread) {
  const dim3 size = launch.config.block;
  threadIdx = {rank % size.x, rank / size.x % size.y, rank / (size.x * size.y)};
  blockIdx = block.index;
  blockDim = size;
  gridDim = launch.config.grid;
  self = Self{&launch, &block, rank, 0, {}};
  thread();
  progress.fetch_add(1, std::memory_order_relaxed);
  block.counts[rank] = self.counts;
  block.barrier.leave();
  block.warps[rank / kWarp].leave();
  if (launch.config.cooperative) launch.grid.leave();
}

// Every thread of a block passes the same number of __syncthreads, every lane of a warp the same number of
// shuffles and wmma stores, every thread of a cooperative grid `grid_syncs` grid.sync().
void check_counts(Launch& launch, const Block& block, unsigned grid_syncs) {
  for (unsigned rank = 0; rank < block.threads; ++rank) {
    const Counts& first = block.counts[0];
    const Counts& lane0 = block.counts[rank / kWarp * kWarp];
    const Counts& mine = block.counts[rank];
    char text[200];
    if (mine.barriers != first.barriers) {
      std::snprintf(text, sizeof(text), "block (%u, %u, %u): thread 0 passed %u __syncthreads, thread %u %u",
                    block.index.x, block.index.y, block.index.z, first.barriers, rank, mine.barriers);
    } else if (mine.warp_collectives != lane0.warp_collectives) {
      std::snprintf(text, sizeof(text), "block (%u, %u, %u): lanes of warp %u took part in %u and %u warp collectives",
                    block.index.x, block.index.y, block.index.z, rank / kWarp, lane0.warp_collectives,
                    mine.warp_collectives);
    } else if (mine.grid_syncs != grid_syncs) {
      std::snprintf(text, sizeof(text), "block (%u, %u, %u): thread %u passed %u grid.sync(), thread 0 of block 0 %u",
                    block.index.x, block.index.y, block.index.z, rank, mine.grid_syncs, grid_syncs);
    } else {
      continue;
    }
    report(launch, cudaErrorLaunchFailure, text);
    return;
  }
}

// Ends the process where a launch has made no progress for a minute: its threads wait at different
// barriers (a __syncthreads in divergent code beside a warp collective), which would hang the tests.
void start_watchdog() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::thread([] {
      std::uint64_t seen = 0;
      for (int still = 0; still < kDeadlockSeconds;) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        const std::uint64_t now = progress.load(std::memory_order_relaxed);
        still = launch_running.load() && now == seen ? still + 1 : 0;
        seen = now;
      }
      std::fprintf(stderr, "emulator: a launch made no progress for %d s: its threads wait at different barriers\n",
                   kDeadlockSeconds);
      std::abort();
    }).detach();
  });
}

cudaError_t check_config(const LaunchConfig& config) {
  const unsigned threads = config.block.x * config.block.y * config.block.z;
  if (threads == 0 || threads > 1024 || config.grid.x == 0 || config.grid.y == 0 || config.grid.z == 0 ||
      config.grid.y > 65535 || config.grid.z > 65535) {
    return cudaErrorInvalidConfiguration;
  }
  const std::lock_guard lock(state_mutex);
  const auto limit = dynamic_shared_limits.find(config.kernel);
  if (config.shared > std::size_t(limit == dynamic_shared_limits.end() ? kDefaultDynamicSharedLimit : limit->second)) {
    return cudaErrorInvalidValue;
  }
  if (!config.cooperative) return cudaSuccess;
  int per_multiprocessor = 0;
  max_active_blocks(&per_multiprocessor, static_cast<int>(threads), config.shared);
  const std::uint64_t blocks = std::uint64_t(config.grid.x) * config.grid.y * config.grid.z;
  const bool fits = blocks <= std::uint64_t(per_multiprocessor) * device().multiprocessors;
  return device().cooperative_launch_fails || !fits ? cudaErrorCooperativeLaunchTooLarge : cudaSuccess;
}

}  // namespace

// ---- device side ----------------------------------------------------------------------------------------

void syncthreads() {
  self.block->barrier.arrive_and_wait();
  ++self.counts.barriers;
}

void grid_sync() {
  if (!self.launch->config.cooperative) {
    fail("grid.sync() in a launch that is not cooperative");
    return;
  }
  self.launch->grid.arrive_and_wait();
  ++self.counts.grid_syncs;
}

unsigned lane() { return self.rank % kWarp; }

void warp_sync() {
  const unsigned warp = self.rank / kWarp;
  if (self.block->warps[warp].running() < std::min(kWarp, self.block->threads - warp * kWarp)) {
    fail("a warp collective with lanes that have exited");
  }
  self.block->warps[warp].arrive_and_wait();
  ++self.counts.warp_collectives;
}

std::uint64_t warp_exchange(unsigned mask, std::uint64_t bits, int source) {
  Block& block = *self.block;
  const unsigned warp = self.rank / kWarp;
  if (mask != 0xffffffffu || block.threads - warp * kWarp < kWarp) fail("a shuffle over lanes that do not exist");
  block.lanes[warp][lane()] = bits;
  warp_sync();
  const std::uint64_t value = block.lanes[warp][static_cast<unsigned>(source) % kWarp];
  warp_sync();
  return value;
}

void fail(const std::string& message) { report(*self.launch, cudaErrorLaunchFailure, where() + message); }

void* shared_slot(std::size_t bytes, std::size_t alignment) {
  Block& block = *self.block;
  const std::lock_guard lock(block.slots_mutex);
  if (self.slot == block.slots.size()) {
    block.slots.emplace_back(bytes, alignment);
    block.static_bytes += bytes;
    if (block.static_bytes > kStaticSharedLimit) {
      report(*self.launch, cudaErrorLaunchOutOfResources,
             "static shared memory of " + std::to_string(block.static_bytes) + " bytes, over 48 KB");
    }
  }
  const Allocation& slot = block.slots[self.slot++];
  if (slot.bytes() != bytes || slot.alignment() != alignment) {
    report(*self.launch, cudaErrorLaunchFailure, where() + "declares other __shared__ variables than thread 0");
  }
  return slot.data();
}

void* dynamic_shared_bytes() { return self.block->dynamic.data(); }

bool within_launch_bounds(unsigned max_threads) {
  const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
  if (threads <= max_threads) return true;
  report(*self.launch, cudaErrorLaunchOutOfResources,
         "too many resources requested for launch: " + std::to_string(threads) + " threads, __launch_bounds__(" +
             std::to_string(max_threads) + ")");
  return false;
}

// ---- host side ------------------------------------------------------------------------------------------

cudaError_t run(const LaunchConfig& config, const std::function<void()>& thread) {
  static std::mutex one_at_a_time;  // one device, one stream: launches from several host threads queue
  const std::lock_guard serial(one_at_a_time);
  start_watchdog();
  launch_running = true;
  last_message.clear();
  Launch launch{config, config.block.x * config.block.y * config.block.z};
  launch.error = check_config(config);
  const dim3 grid = config.grid;
  const unsigned blocks = grid.x * grid.y * grid.z, threads = launch.threads_per_block;
  const auto index = [&](unsigned b) { return dim3(b % grid.x, b / grid.x % grid.y, b / (grid.x * grid.y)); };
  if (launch.error == cudaSuccess && config.cooperative) {  // every block at once: grid.sync() needs them all
    std::deque<Block> all;
    for (unsigned b = 0; b < blocks; ++b) all.emplace_back(index(b), threads, config.shared);
    launch.grid.reset(std::uint64_t(blocks) * threads);
    pool().run(blocks * threads, [&](unsigned i) { run_thread(launch, all[i / threads], i % threads, thread); });
    for (const Block& block : all) check_counts(launch, block, all[0].counts[0].grid_syncs);
  } else if (launch.error == cudaSuccess) {  // block after block
    for (unsigned b = 0; b < blocks && launch.error == cudaSuccess; ++b) {
      Block block(index(b), threads, config.shared);
      pool().run(threads, [&](unsigned rank) { run_thread(launch, block, rank, thread); });
      check_counts(launch, block, 0);
    }
  }
  launch_running = false;
  {
    const std::lock_guard lock(state_mutex);
    recorded.launches.push_back({config.name, threads, config.shared, launch.error});
  }
  if (launch.error != cudaSuccess) {
    last_error = launch.error;
    last_message = launch.message;
  }
  return launch.error;
}

cudaError_t set_max_dynamic_shared(const void* kernel, int bytes) {
  if (bytes < 0 || bytes > device().shared_per_block_optin) return cudaErrorInvalidValue;
  const std::lock_guard lock(state_mutex);
  dynamic_shared_limits[kernel] = bytes;
  ++recorded.attribute_sets;
  return cudaSuccess;
}

cudaError_t max_active_blocks(int* blocks, int threads, std::size_t shared) {
  const Device& d = device();
  const int by_shared = static_cast<int>(d.shared_per_multiprocessor / (shared + 1024));  // 1 KB reserved per block
  *blocks = std::min({2048 / std::max(threads, 1), 32, by_shared});
  return cudaSuccess;
}

Device& device() {
  static Device instance;
  return instance;
}

Stats stats() {
  const std::lock_guard lock(state_mutex);
  return recorded;
}

void reset_stats() {
  const std::lock_guard lock(state_mutex);
  recorded = Stats{};
}

}  // namespace emu

cudaError_t cudaGetLastError() { return std::exchange(emu::last_error, cudaSuccess); }

const char* cudaGetErrorString(cudaError_t error) {
  thread_local std::string text;
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: text = "invalid argument"; break;
    case cudaErrorInvalidConfiguration: text = "invalid configuration argument"; break;
    case cudaErrorLaunchOutOfResources: text = "too many resources requested for launch"; break;
    case cudaErrorLaunchFailure: text = "unspecified launch failure"; break;
    case cudaErrorCooperativeLaunchTooLarge: text = "too many blocks in cooperative launch"; break;
  }
  if (!emu::last_message.empty()) text += " (emulator: " + emu::last_message + ")";
  return text.c_str();
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int) {
  const emu::Device& d = emu::device();
  switch (attribute) {
    case cudaDevAttrMultiProcessorCount: *value = d.multiprocessors; return cudaSuccess;
    case cudaDevAttrCooperativeLaunch: *value = 1; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = d.shared_per_block_optin; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}

float atomicAdd(float* address, float value) { return std::atomic_ref<float>(*address).fetch_add(value); }
double atomicAdd(double* address, double value) { return std::atomic_ref<double>(*address).fetch_add(value); }
