// updp-bench-encoder: BLIP-2 image-feature throughput (images/s) for a checkpoint or
// a random preset, model-only and end to end (decode + preprocess + model, with the
// decode pool overlapping the model), and peak memory.
//
//   updp-bench-encoder --preset small --batch_size 32 --images DIR --device cpu
//   updp-bench-encoder --preset vit-g --device cuda --precision bf16 --batch_size 64
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "server/model/blip2_model.h"
#include "server/model/encoder.h"
#include "server/model/safetensors.h"
#include "server/model/test_model.h"

#ifdef UPDP_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

ABSL_FLAG(std::string, model_dir, "", "checkpoint folder (default: a random --preset)");
ABSL_FLAG(std::string, preset, "small", "tiny | small | vit-g (random weights)");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda[:N]");
ABSL_FLAG(std::string, precision, "auto", "vision dtype: auto | fp32 | bf16 | fp16");
ABSL_FLAG(int, batch_size, 32, "images per batch");
ABSL_FLAG(int, batches, 5, "timed batches (model only)");
ABSL_FLAG(std::string, images, "", "folder of images for the end-to-end run (optional)");
ABSL_FLAG(int, decode_threads, 2, "decode threads for the end-to-end run");
ABSL_FLAG(double, peak_tflops, 0, "device bf16 peak, to report the fraction reached");
ABSL_FLAG(double, gflop_per_image, 0, "model GFLOP per image (521 for ViT-g at 224 px)");

namespace fs = std::filesystem;

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Sync(const torch::Device& d) {
#ifdef UPDP_WITH_CUDA
  if (d.is_cuda()) torch::cuda::synchronize(d.index() < 0 ? 0 : d.index());
#else
  (void)d;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto device = updp::model::ParseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) {
    std::cerr << device.status().message() << "\n";
    return 2;
  }
  auto dtype = updp::model::ParseVisionDtype(absl::GetFlag(FLAGS_precision), *device);
  if (!dtype.ok()) {
    std::cerr << dtype.status().message() << "\n";
    return 2;
  }
  std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (dir.empty()) {
    dir = (fs::temp_directory_path() / ("updp-bench-" + absl::GetFlag(FLAGS_preset))).string();
    if (!fs::exists(dir + "/model.safetensors")) {
      auto cfg = updp::model::PresetConfig(absl::GetFlag(FLAGS_preset));
      if (!cfg.ok() || !updp::model::WriteRandomCheckpoint(dir, *cfg, 0).ok()) {
        std::cerr << "cannot create the random checkpoint\n";
        return 1;
      }
    }
  }
  double t0 = Now();
  auto m = updp::model::Blip2Model::Load(dir, {*device, *dtype});
  if (!m.ok()) {
    std::cerr << m.status().message() << "\n";
    return 1;
  }
  std::shared_ptr<const updp::model::Blip2Model> model(std::move(*m));
  const double load_s = Now() - t0;
  updp::model::ImageEncoder enc(model, absl::GetFlag(FLAGS_decode_threads));
  const int bs = absl::GetFlag(FLAGS_batch_size), size = model->config().vision.image_size;
  std::printf("checkpoint %s (%lld parameters), device %s, vision dtype %s, batch %d, load %.1f s\n",
              dir.c_str(), static_cast<long long>(model->num_parameters()),
              absl::GetFlag(FLAGS_device).c_str(), updp::model::DtypeToString(*dtype).c_str(), bs,
              load_s);
  torch::Tensor px = torch::randn({bs, 3, size, size});
  enc.Embed(px);  // warm-up
  Sync(*device);
  const int batches = absl::GetFlag(FLAGS_batches);
  t0 = Now();
  for (int i = 0; i < batches; ++i) enc.Embed(px);
  Sync(*device);
  const double model_ips = bs * batches / (Now() - t0);
  std::printf("model only: %.1f images/s\n", model_ips);
  if (absl::GetFlag(FLAGS_peak_tflops) > 0 && absl::GetFlag(FLAGS_gflop_per_image) > 0) {
    const double tflops = model_ips * absl::GetFlag(FLAGS_gflop_per_image) / 1000.0;
    std::printf("achieved %.1f TFLOP/s = %.1f%% of the %.0f TFLOP/s peak\n", tflops,
                100.0 * tflops / absl::GetFlag(FLAGS_peak_tflops), absl::GetFlag(FLAGS_peak_tflops));
  }
  if (!absl::GetFlag(FLAGS_images).empty()) {
    std::vector<std::string> paths;
    for (const auto& e : fs::directory_iterator(absl::GetFlag(FLAGS_images))) {
      const auto ext = e.path().extension().string();
      if (ext == ".png" || ext == ".jpg" || ext == ".jpeg") paths.push_back(e.path().string());
    }
    std::sort(paths.begin(), paths.end());
    t0 = Now();
    auto out = enc.EncodeAll(paths, bs, nullptr, nullptr);
    Sync(*device);
    std::printf("end to end (decode+preprocess+model, %zu images): %.1f images/s, %zu failed\n",
                paths.size(), paths.size() / (Now() - t0), out.errors.size());
  }
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::printf("peak host RSS: %.0f MB\n", ru.ru_maxrss / 1024.0);
#ifdef UPDP_WITH_CUDA
  if (device->is_cuda()) {
    auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(device->index() < 0 ? 0 : device->index());
    std::printf("peak device memory: %.0f MB allocated, %.0f MB reserved\n",
                st.allocated_bytes[0].peak / 1048576.0, st.reserved_bytes[0].peak / 1048576.0);
  }
#endif
  return 0;
}
