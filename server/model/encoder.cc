#include "server/model/encoder.h"

#include <atomic>
#include <future>
#include <thread>

#include "server/model/image_preprocess.h"

namespace updp::model {

ImageEncoder::ImageEncoder(std::shared_ptr<const Blip2Model> model, int decode_threads)
    : model_(std::move(model)), decode_threads_(std::max(1, decode_threads)) {}

PreparedBatch ImageEncoder::Prepare(const std::vector<std::string>& paths) const {
  const int n = static_cast<int>(paths.size());
  const int size = model_->config().vision.image_size;
  const size_t per = 3u * size * size;
  std::vector<std::vector<float>> pix(n);
  std::vector<std::string> err(n);
  std::atomic<int> next{0};
  auto worker = [&]() {
    for (int i = next++; i < n; i = next++) {
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
  b.pixels = torch::empty({static_cast<int64_t>(b.ok.size()), 3, size, size});
  float* dst = b.pixels.data_ptr<float>();
  for (size_t r = 0; r < b.ok.size(); ++r) {
    std::copy(pix[b.ok[r]].begin(), pix[b.ok[r]].end(), dst + r * per);
  }
  return b;
}

torch::Tensor ImageEncoder::Embed(const torch::Tensor& pixels) const {
  torch::InferenceMode guard;
  if (pixels.size(0) == 0) {
    return torch::empty({0, model_->config().image_text_hidden_size});
  }
  torch::Tensor image = model_->EncodeImage(pixels);
  return model_->ImageFeature(image).to(torch::kCPU, torch::kFloat32);
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
  std::vector<torch::Tensor> feats;
  std::future<PreparedBatch> next;
  if (n > 0) next = std::async(std::launch::async, [this, p = slice(0)] { return Prepare(p); });
  int64_t failed = 0;
  for (int begin = 0; begin < n; begin += batch_size) {
    PreparedBatch b = next.get();
    if (begin + batch_size < n) {
      next = std::async(std::launch::async,
                        [this, p = slice(begin + batch_size)] { return Prepare(p); });
    }
    if (cancelled && cancelled()) {
      if (next.valid()) next.wait();
      out.cancelled = true;
      return out;
    }
    feats.push_back(Embed(b.pixels).to(torch::kFloat16));
    for (int i : b.ok) out.ok.push_back(begin + i);
    for (auto& [i, e] : b.errors) out.errors.emplace_back(begin + i, e);
    failed += static_cast<int64_t>(b.errors.size());
    if (on_batch) on_batch(std::min(n, begin + batch_size), failed);
  }
  out.features = feats.empty() ? torch::empty({0, model_->config().image_text_hidden_size},
                                              torch::kFloat16)
                               : torch::cat(feats, 0);
  return out;
}

}  // namespace updp::model
