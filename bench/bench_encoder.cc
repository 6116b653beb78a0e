// updp-bench-encoder: BLIP-2 image-feature throughput (images/s) for a checkpoint or
// a random preset: model only (pixels already in pinned host memory; the batch loop
// never waits for the device) at one or more batch sizes, end to end (decode +
// Pillow-exact preprocess + model, decoding overlapped with the model), peak memory;
// optionally the projected image query features of given pixels, for comparisons
// with the reference implementation (bench/hf_compare.py).
//
//   updp-bench-encoder --preset small --batch_sizes 32 --images DIR --device cpu
//   updp-bench-encoder --preset vit-g --device cuda --precision bf16 --batch_sizes 64,128,256
#include <sys/resource.h>
#include <torch/version.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "server/model/blip2_model.h"
#include "server/model/encoder.h"
#include "server/model/safetensors.h"
#include "server/model/test_model.h"
#include "server/util/flags_help.h"

#ifdef UPDP_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

ABSL_FLAG(std::string, model_dir, "", "checkpoint folder (default: a random --preset)");
ABSL_FLAG(std::string, preset, "small", "tiny | small | vit-g (random weights)");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda[:N]");
ABSL_FLAG(std::string, precision, "auto", "vision dtype: auto | fp32 | bf16 | fp16");
ABSL_FLAG(std::string, attention, "auto", "auto | math | sdpa");
ABSL_FLAG(bool, cuda_graphs, true, "replay the image path as CUDA graphs (CUDA only)");
ABSL_FLAG(std::string, qformer_precision, "auto",
          "Q-Former dtype on the image path: auto (bf16 with a bf16 ViT on CUDA) | fp32 | bf16");
ABSL_FLAG(bool, fused_gelu, true,
          "CUDA, bf16/fp16 ViT: fc1+GELU as one GEMM with cuBLASLt's tanh-GELU epilogue "
          "(false: the exact GELU as a separate kernel)");
ABSL_FLAG(std::vector<std::string>, batch_sizes, {"32"}, "comma-separated batch sizes");
ABSL_FLAG(int, batches, 5, "timed batches per batch size (model only); 0 skips timing");
ABSL_FLAG(int, threads, 0, "LibTorch intra-op threads (0: LibTorch's default)");
ABSL_FLAG(std::string, images, "", "folder of images for the end-to-end run (optional)");
ABSL_FLAG(int, decode_threads, 2, "decode threads for the end-to-end run");
ABSL_FLAG(int, e2e_batch_size, 0, "batch size of the end-to-end run (0: the first of --batch_sizes)");
ABSL_FLAG(std::string, pixels_in, "",
          "safetensors file with 'pixel_values' [B,3,S,S]: write their projected image query "
          "features to --features_out");
ABSL_FLAG(std::string, features_out, "", "safetensors output for --pixels_in");
ABSL_FLAG(std::string, json_out, "", "write the results as JSON here");
ABSL_FLAG(double, peak_tflops, 0, "device bf16 peak, to report the fraction reached");
ABSL_FLAG(double, gflop_per_image, 0, "model GFLOP per image (521 for ViT-g at 224 px)");

namespace fs = std::filesystem;
using updp::model::Blip2Model;

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

int Fail(const std::string& msg) {
  std::cerr << "updp-bench-encoder: " << msg << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("updp-bench-encoder [--model_dir DIR | --preset P] [--device D]");
  updp::ShowOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_threads) > 0) torch::set_num_threads(absl::GetFlag(FLAGS_threads));
  auto device = updp::model::ParseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) return Fail(std::string(device.status().message()));
  auto dtype = updp::model::ParseVisionDtype(absl::GetFlag(FLAGS_precision), *device);
  if (!dtype.ok()) return Fail(std::string(dtype.status().message()));
  auto attention = updp::model::ParseAttention(absl::GetFlag(FLAGS_attention));
  if (!attention.ok()) return Fail(std::string(attention.status().message()));
  std::vector<int> batch_sizes;
  for (const auto& s : absl::GetFlag(FLAGS_batch_sizes)) {
    int b = 0;
    if (!absl::SimpleAtoi(s, &b) || b < 1) return Fail("batch_sizes: '" + s + "' is not a positive integer");
    batch_sizes.push_back(b);
  }
  if (batch_sizes.empty()) return Fail("batch_sizes: empty");

  std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (dir.empty()) {
    dir = (fs::temp_directory_path() / ("updp-bench-" + absl::GetFlag(FLAGS_preset))).string();
    if (!fs::exists(dir + "/model.safetensors")) {
      auto cfg = updp::model::PresetConfig(absl::GetFlag(FLAGS_preset));
      if (!cfg.ok()) return Fail(std::string(cfg.status().message()));
      if (auto s = updp::model::WriteRandomCheckpoint(dir, *cfg, 0); !s.ok()) {
        return Fail(std::string(s.message()));
      }
    }
  }
  double t0 = Now();
  updp::model::ModelOptions mo;
  mo.device = *device;
  mo.vision_dtype = *dtype;
  mo.attention = *attention;
  auto qdtype = updp::model::ParseQFormerDtype(absl::GetFlag(FLAGS_qformer_precision), *device, *dtype);
  if (!qdtype.ok()) return Fail(std::string(qdtype.status().message()));
  mo.qformer_image_dtype = *qdtype;
  mo.fused_gelu = absl::GetFlag(FLAGS_fused_gelu);
  auto m = Blip2Model::Load(dir, mo);
  if (!m.ok()) return Fail(std::string(m.status().message()));
  std::shared_ptr<const Blip2Model> model(std::move(*m));
  const double load_s = Now() - t0;
  updp::model::EncoderOptions eo;
  eo.decode_threads = absl::GetFlag(FLAGS_decode_threads);
  eo.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  updp::model::ImageEncoder enc(model, eo);
  const int size = model->config().vision.image_size;
  nlohmann::json result = {
      {"checkpoint", dir},
      {"parameters", model->num_parameters()},
      {"device", absl::GetFlag(FLAGS_device)},
      {"vision_dtype", updp::model::DtypeToString(*dtype)},
      {"attention", updp::model::AttentionName(model->attention())},
      {"qformer_image_dtype", updp::model::DtypeToString(*qdtype)},
      {"fused_gelu", absl::GetFlag(FLAGS_fused_gelu)},
      {"cuda_graphs", enc.uses_cuda_graphs()},
      {"threads", torch::get_num_threads()},
      {"torch_version", TORCH_VERSION},
      {"load_s", load_s},
  };
  std::printf(
      "checkpoint %s (%lld parameters), device %s, vision dtype %s, Q-Former image path %s, "
      "attention %s, cuda graphs %s, LibTorch %s, %d threads, load %.1f s\n",
      dir.c_str(), static_cast<long long>(model->num_parameters()), absl::GetFlag(FLAGS_device).c_str(),
      updp::model::DtypeToString(*dtype).c_str(), updp::model::DtypeToString(*qdtype).c_str(),
      updp::model::AttentionName(model->attention()),
      enc.uses_cuda_graphs() ? "on" : "off", TORCH_VERSION, torch::get_num_threads(), load_s);

  if (!absl::GetFlag(FLAGS_pixels_in).empty()) {
    auto in = updp::model::SafetensorsFile::Open(absl::GetFlag(FLAGS_pixels_in));
    if (!in.ok()) return Fail(std::string(in.status().message()));
    auto px = (*in)->Get("pixel_values", torch::kFloat32);
    if (!px.ok()) return Fail(std::string(px.status().message()));
    torch::InferenceMode guard;
    torch::Tensor image = model->EncodeImage(*px);
    torch::Tensor proj = model->ProjectImage(model->ImageQueryOutput(image)).to(torch::kCPU, torch::kFloat32);
    torch::Tensor feat = enc.Embed(*px);
    auto s = updp::model::WriteSafetensors(absl::GetFlag(FLAGS_features_out),
                                           {{"image_embeds_proj", proj.contiguous()},
                                            {"image_feature", feat.contiguous()}},
                                           {{"format", "pt"}});
    if (!s.ok()) return Fail(std::string(s.message()));
    std::printf("wrote projected image query features [%lld,%lld,%lld] to %s\n",
                static_cast<long long>(proj.size(0)), static_cast<long long>(proj.size(1)),
                static_cast<long long>(proj.size(2)), absl::GetFlag(FLAGS_features_out).c_str());
  }

  const int batches = absl::GetFlag(FLAGS_batches);
  for (int bs : batch_sizes) {
    if (batches <= 0) break;
    torch::manual_seed(0);
    torch::Tensor px = torch::randn({bs, 3, size, size});
    if (device->is_cuda()) px = px.pin_memory();
    auto run = [&] {
      torch::Tensor f = enc.EmbedOnDevice(px);
      return device->is_cuda() ? f.to(torch::TensorOptions().device(torch::kCPU).pinned_memory(true), true) : f;
    };
    run();  // warm-up (and CUDA graph capture for this shape)
    run();
    Sync(*device);
    t0 = Now();
    for (int i = 0; i < batches; ++i) run();
    Sync(*device);
    const double ips = static_cast<double>(bs) * batches / (Now() - t0);
    nlohmann::json r = {{"batch_size", bs}, {"batches", batches}, {"images_per_s", ips}};
    std::printf("model only, batch %d: %.1f images/s", bs, ips);
    if (absl::GetFlag(FLAGS_peak_tflops) > 0 && absl::GetFlag(FLAGS_gflop_per_image) > 0) {
      const double tflops = ips * absl::GetFlag(FLAGS_gflop_per_image) / 1000.0;
      r["tflops"] = tflops;
      r["fraction_of_peak"] = tflops / absl::GetFlag(FLAGS_peak_tflops);
      std::printf(" = %.1f TFLOP/s = %.1f%% of %.0f", tflops, 100.0 * tflops / absl::GetFlag(FLAGS_peak_tflops),
                  absl::GetFlag(FLAGS_peak_tflops));
    }
    std::printf("\n");
    std::fflush(stdout);
    result["model_only"].push_back(r);
  }

  if (!absl::GetFlag(FLAGS_images).empty()) {
    std::vector<std::string> paths;
    std::error_code ec;
    for (fs::directory_iterator it(absl::GetFlag(FLAGS_images), ec), end; !ec && it != end; it.increment(ec)) {
      const auto ext = it->path().extension().string();
      if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".webp") paths.push_back(it->path().string());
    }
    if (ec) return Fail(absl::GetFlag(FLAGS_images) + ": " + ec.message());
    std::sort(paths.begin(), paths.end());
    const int bs = absl::GetFlag(FLAGS_e2e_batch_size) > 0 ? absl::GetFlag(FLAGS_e2e_batch_size) : batch_sizes[0];
    // Warm-up on one batch so that graph capture and lazy initialisation are not timed.
    enc.EncodeAll(std::vector<std::string>(paths.begin(), paths.begin() + std::min<size_t>(paths.size(), bs)),
                  bs, nullptr, nullptr);
    t0 = Now();
    auto out = enc.EncodeAll(paths, bs, nullptr, nullptr);
    Sync(*device);
    const double ips = paths.size() / (Now() - t0);
    std::printf("end to end (decode+preprocess+model, %zu images, batch %d, %d decode threads): %.1f images/s, %zu failed\n",
                paths.size(), bs, absl::GetFlag(FLAGS_decode_threads), ips, out.errors.size());
    // Decoding + preprocessing alone, on the same threads, to tell which side limits.
    t0 = Now();
    size_t decoded = 0;
    for (size_t b = 0; b < paths.size(); b += bs) {
      auto pb = enc.Prepare(std::vector<std::string>(paths.begin() + b, paths.begin() + std::min(paths.size(), b + bs)));
      decoded += pb.ok.size();
    }
    const double decode_ips = decoded / (Now() - t0);
    std::printf("decode+preprocess alone: %.1f images/s\n", decode_ips);
    result["end_to_end"] = {{"images", paths.size()},       {"batch_size", bs},
                            {"decode_threads", absl::GetFlag(FLAGS_decode_threads)},
                            {"images_per_s", ips},          {"failed", out.errors.size()},
                            {"decode_only_images_per_s", decode_ips}};
  }
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::printf("peak host RSS: %.0f MB\n", ru.ru_maxrss / 1024.0);
  result["peak_host_rss_mb"] = ru.ru_maxrss / 1024.0;
#ifdef UPDP_WITH_CUDA
  if (device->is_cuda()) {
    auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(device->index() < 0 ? 0 : device->index());
    std::printf("peak device memory: %.0f MB allocated, %.0f MB reserved\n",
                st.allocated_bytes[0].peak / 1048576.0, st.reserved_bytes[0].peak / 1048576.0);
    result["peak_device_allocated_mb"] = st.allocated_bytes[0].peak / 1048576.0;
    result["peak_device_reserved_mb"] = st.reserved_bytes[0].peak / 1048576.0;
  }
#endif
  if (!absl::GetFlag(FLAGS_json_out).empty()) {
    std::ofstream f(absl::GetFlag(FLAGS_json_out));
    f << result.dump(2) << "\n";
    if (!f) return Fail(absl::GetFlag(FLAGS_json_out) + ": cannot write");
  }
  return 0;
}
