#include "server/model/cuda_graph.h"

#ifdef UPDP_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <torch/version.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace updp::model {

#ifdef UPDP_WITH_CUDA
struct CudaGraphCache::Entry {
  at::cuda::CUDAGraph graph;
  torch::Tensor input, output;
};

bool CudaGraphCache::Available() { return true; }
#else
struct CudaGraphCache::Entry {};
bool CudaGraphCache::Available() { return false; }
#endif

CudaGraphCache::CudaGraphCache(Fn fn, torch::Device device, int max_graphs)
    : fn_(std::move(fn)), device_(device), max_graphs_(max_graphs) {}

CudaGraphCache::~CudaGraphCache() = default;

torch::Tensor CudaGraphCache::Run(const torch::Tensor& input) {
#ifdef UPDP_WITH_CUDA
  std::lock_guard<std::mutex> l(mu_);
  c10::cuda::CUDAGuard device_guard(device_);
  const std::vector<int64_t> shape = input.sizes().vec();
  auto it = entries_.find(shape);
  if (it != entries_.end() && it->second == nullptr) return torch::Tensor();  // capture failed
  if (it == entries_.end() && static_cast<int>(entries_.size()) >= max_graphs_) {
    return torch::Tensor();
  }
  auto& slot = entries_[shape];
  if (!slot) {
    auto e = std::make_unique<Entry>();
    e->input = torch::empty(input.sizes(), input.options().device(device_).pinned_memory(false));
    e->input.copy_(input);
    // Warm up outside the capture (cuBLAS/cuDNN handles and workspaces, lazy kernel
    // loading), then capture on a side stream, as CUDA graph capture requires a
    // non-default stream. Synchronising here happens once per shape.
    c10::cuda::device_synchronize();
    c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, device_.index());
    bool capturing = false;
    try {
      c10::cuda::CUDAStreamGuard stream_guard(side);
      for (int i = 0; i < 2; ++i) fn_(e->input);
      side.synchronize();
#if TORCH_VERSION_MAJOR >= 2
      // Thread-local capture: the decode threads may allocate pinned memory meanwhile,
      // which a global-mode capture would turn into an error.
      e->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
#else
      e->graph.capture_begin();
#endif
      capturing = true;
      e->output = fn_(e->input);
      e->graph.capture_end();
    } catch (const std::exception& ex) {
      // Never leave a half-made graph behind: this shape then runs without one.
      if (capturing) {
        try {
          e->graph.capture_end();
        } catch (...) {
        }
      }
      TORCH_WARN("CUDA graph capture failed for this batch shape; running without it: ", ex.what());
      // The slot stays empty: remembered as "no graph" for this shape.
      c10::cuda::device_synchronize();
      return torch::Tensor();
    }
    c10::cuda::device_synchronize();
    slot = std::move(e);
  } else {
    slot->input.copy_(input, /*non_blocking=*/true);
  }
  slot->graph.replay();
  // A private copy, enqueued before any later replay can overwrite the static output.
  return slot->output.clone();
#else
  (void)input;
  TORCH_CHECK(false, "CUDA graphs need a build with UPDP_WITH_CUDA");
#endif
}

}  // namespace updp::model
