#include "server/model/encoder.h"

#include <atomic>
#include <future>
#include <thread>

#include "server/model/image_preprocess.h"

#ifdef UPDP_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace updp::model {
namespace {

// A point in the current CUDA stream's work; Wait() blocks until the GPU passed it. A
// no-op for CPU models.
class StreamFence {
 public:
  explicit StreamFence(const torch::Device& d) {
#ifdef UPDP_WITH_CUDA
    if (d.is_cuda()) {
      event_ = std::make_unique<at::cuda::CUDAEvent>();
      // The model's device's current stream, whatever device is current here.
      event_->record(c10::cuda::getCurrentCUDAStream(d.index()));
    }
#else
    (void)d;
#endif
  }
  void Wait() {
#ifdef UPDP_WITH_CUDA
    if (event_) event_->synchronize();
#endif
  }

 private:
#ifdef UPDP_WITH_CUDA
  std::unique_ptr<at::cuda::CUDAEvent> event_;
#endif
};

}  // namespace

ImageEncoder::ImageEncoder(std::shared_ptr<const Blip2Model> model, int decode_threads)
    : ImageEncoder(std::move(model), [decode_threads] {
        EncoderOptions o;
        o.decode_threads = decode_threads;
        return o;
      }()) {}

ImageEncoder::ImageEncoder(std::shared_ptr<const Blip2Model> model, const EncoderOptions& options)
    : model_(std::move(model)), decode_threads_(std::max(1, options.decode_threads)) {
  if (options.cuda_graphs && CudaGraphCache::Available() && model_->options().device.is_cuda()) {
    const Blip2Model* m = model_.get();
    graphs_ = std::make_unique<CudaGraphCache>(
        [m](const torch::Tensor& px) { return m->ImageFeature(m->EncodeImage(px)); },
        model_->options().device, options.max_cuda_graphs);
  }
}

PreparedBatch ImageEncoder::Prepare(const std::vector<std::string>& paths) const {
  const int n = static_cast<int>(paths.size());
  const int size = model_->config().vision.image_size;
  const size_t per = 3u * size * size;
  std::vector<std::vector<float>> pix(n);
  std::vector<std::string> err(n);
  std::atomic<int> next{0};
  auto worker = [&]() {
    for (int i = next++; i < n; i = next++) {
      // Nothing may escape a worker thread (std::terminate): an allocation failure on a
      // huge image is that image's error.
      try {
        auto img = DecodeImageFile(paths[i]);
        if (!img.ok()) {
          err[i] = std::string(img.status().message());
          continue;
        }
        if (img->width < 1 || img->height < 1) {
          err[i] = paths[i] + ": empty image";
          continue;
        }
        pix[i] = PreprocessForBlip2(*img, size);
      } catch (const std::exception& e) {
        err[i] = paths[i] + ": cannot decode: " + e.what();
        pix[i].clear();
      }
    }
  };
  std::vector<std::thread> threads;
  const int t = std::min(decode_threads_, std::max(1, n));
  for (int i = 1; i < t; ++i) threads.emplace_back(worker);
  worker();
  for (auto& th : threads) th.join();

  PreparedBatch b;
  for (int i = 0; i < n; ++i) {
    if (err[i].empty()) {
      b.ok.push_back(i);
    } else {
      b.errors.emplace_back(i, err[i]);
    }
  }
  // Pinned host memory lets the copy to the GPU run asynchronously.
  b.pixels = torch::empty({static_cast<int64_t>(b.ok.size()), 3, size, size},
                          torch::TensorOptions().pinned_memory(model_->options().device.is_cuda()));
  float* dst = b.pixels.data_ptr<float>();
  for (size_t r = 0; r < b.ok.size(); ++r) {
    std::copy(pix[b.ok[r]].begin(), pix[b.ok[r]].end(), dst + r * per);
  }
  return b;
}

torch::Tensor ImageEncoder::EmbedOnDevice(const torch::Tensor& pixels, bool allow_graph) const {
  torch::InferenceMode guard;
  if (pixels.size(0) == 0) {
    return torch::empty({0, model_->config().image_text_hidden_size},
                        torch::TensorOptions().device(model_->options().device));
  }
  if (graphs_ && allow_graph) {
    torch::Tensor f = graphs_->Run(pixels);
    if (f.defined()) return f;
  }
  const bool async = pixels.is_pinned();
  torch::Tensor px = pixels.to(model_->options().device, model_->options().vision_dtype, async);
  return model_->ImageFeature(model_->EncodeImage(px));
}

torch::Tensor ImageEncoder::Embed(const torch::Tensor& pixels) const {
  torch::InferenceMode guard;
  return EmbedOnDevice(pixels).to(torch::kCPU, torch::kFloat32);
}

EncodedChunk ImageEncoder::EncodeAll(
    const std::vector<std::string>& paths, int batch_size, const std::function<bool()>& cancelled,
    const std::function<void(int64_t, int64_t)>& on_batch) const {
  EncodedChunk out;
  batch_size = std::max(1, batch_size);
  const int n = static_cast<int>(paths.size());
  auto slice = [&](int begin) {
    int end = std::min(n, begin + batch_size);
    return std::vector<std::string>(paths.begin() + begin, paths.begin() + end);
  };
  const torch::Device device = model_->options().device;
  std::vector<torch::Tensor> feats;
  std::future<PreparedBatch> next;
  if (n > 0) next = std::async(std::launch::async, [this, p = slice(0)] { return Prepare(p); });
  int64_t failed = 0;
  // The batch whose features are still on their way back from the device.
  struct InFlight {
    int begin;
    PreparedBatch batch;
    torch::Tensor host;
    StreamFence fence;
  };
  std::unique_ptr<InFlight> in_flight;
  auto finish = [&](InFlight& f) {
    f.fence.Wait();
    feats.push_back(f.host);
    for (int i : f.batch.ok) out.ok.push_back(f.begin + i);
    for (auto& [i, e] : f.batch.errors) out.errors.emplace_back(f.begin + i, e);
    failed += static_cast<int64_t>(f.batch.errors.size());
    if (on_batch) on_batch(std::min(n, f.begin + batch_size), failed);
  };
  for (int begin = 0; begin < n; begin += batch_size) {
    PreparedBatch b = next.get();
    if (begin + batch_size < n) {
      next = std::async(std::launch::async,
                        [this, p = slice(begin + batch_size)] { return Prepare(p); });
    }
    if (cancelled && cancelled()) {
      if (next.valid()) next.wait();
      if (in_flight) in_flight->fence.Wait();
      out.cancelled = true;
      return out;
    }
    // Queue this batch, then wait for the previous one: the device always has work.
    // A short batch (the last one, or one with failed images) runs without a graph.
    const bool full = b.pixels.size(0) == batch_size;
    torch::Tensor f16 = EmbedOnDevice(b.pixels, full).to(torch::kFloat16);
    torch::Tensor host =
        device.is_cuda()
            ? f16.to(torch::TensorOptions().device(torch::kCPU).pinned_memory(true), true)
            : f16;
    auto queued = std::unique_ptr<InFlight>(new InFlight{begin, std::move(b), host, StreamFence(device)});
    if (!device.is_cuda()) {  // computed already: report it now, as a CPU run always did
      finish(*queued);
      continue;
    }
    if (in_flight) finish(*in_flight);
    in_flight = std::move(queued);
  }
  if (in_flight) finish(*in_flight);
  out.features = feats.empty() ? torch::empty({0, model_->config().image_text_hidden_size},
                                              torch::kFloat16)
                               : torch::cat(feats, 0);
  return out;
}

}  // namespace updp::model
