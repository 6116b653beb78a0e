// Replays a fixed-shape function as a CUDA graph, one graph per input shape.
//
// BLIP-2's image path is ~600 kernel launches per batch (40 ViT layers + the Q-Former).
// Captured once per batch shape and replayed, the launches cost one call and the GPU
// never waits for the host between kernels. Only compiled with UPDP_WITH_CUDA; other
// builds get a stub whose Available() is false.
#ifndef UPDP_SERVER_MODEL_CUDA_GRAPH_H_
#define UPDP_SERVER_MODEL_CUDA_GRAPH_H_

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace updp::model {

class CudaGraphCache {
 public:
  using Fn = std::function<torch::Tensor(const torch::Tensor&)>;
  // `fn` must be a pure function of its device input with no host synchronisation
  // (no .item(), no CPU tensors, no shape-dependent host branches on values). Each
  // graph keeps a private memory pool as large as one batch's activations, so at most
  // `max_graphs` shapes are captured.
  CudaGraphCache(Fn fn, torch::Device device, int max_graphs);
  ~CudaGraphCache();
  CudaGraphCache(const CudaGraphCache&) = delete;
  CudaGraphCache& operator=(const CudaGraphCache&) = delete;

  // True in builds with CUDA support (UPDP_WITH_CUDA).
  static bool Available();

  // Copies `input` (host, ideally pinned, or device) into the graph's static input for
  // its shape (capturing on first use: that call synchronises), replays, and returns a
  // copy of the graph's output. Everything is enqueued on the current CUDA stream;
  // nothing waits. Thread-safe.
  // Returns an undefined tensor (and does nothing) when `input`'s shape is new and
  // `max_graphs` shapes are already captured: the caller then runs `fn` itself.
  torch::Tensor Run(const torch::Tensor& input);

 private:
  struct Entry;
  Fn fn_;
  torch::Device device_;
  int max_graphs_;
  std::mutex mu_;
  std::map<std::vector<int64_t>, std::unique_ptr<Entry>> entries_;
};

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_CUDA_GRAPH_H_
