// updp-embed-shard: embeds one shard of a registered dataset's items on this machine's
// GPU (or CPU), for a scale-out run as a Kubernetes Indexed Job (deploy/k8s/embed-job):
//   updpctl dataset items NAME --out /shared/NAME/items.jsonl
//   updp-embed-shard --items /shared/NAME/items.jsonl --out /shared/NAME/features \
//       --model_dir /models/blip2-itm-vit-g --shards 16 --device cuda   (x16, index 0..15)
//   updpctl dataset attach-features NAME --from /shared/NAME/features
// The shard index comes from --shard or, when that is not given, from Kubernetes'
// JOB_COMPLETION_INDEX. Exit status: 0 done, 1 a fatal error (the message says which),
// 2 bad usage.
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "server/engine/shard_embed.h"
#include "server/util/flags_help.h"
#include "server/util/openmp_env.h"

ABSL_FLAG(std::string, items, "", "items file (`updpctl dataset items NAME --out FILE`)");
ABSL_FLAG(std::string, out, "", "shared output directory for the feature chunks");
ABSL_FLAG(int, shards, 0, "number of shards (the Indexed Job's completions)");
ABSL_FLAG(int, shard, -1, "this shard's index; default: $JOB_COMPLETION_INDEX");
ABSL_FLAG(std::string, model_dir, "", "BLIP-2 checkpoint folder, as the server's --model_dir");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda | cuda:N");
ABSL_FLAG(std::string, precision, "auto", "as the server's --precision");
ABSL_FLAG(std::string, attention, "auto", "as the server's --attention");
ABSL_FLAG(std::string, qformer_precision, "auto", "as the server's --qformer_precision");
ABSL_FLAG(bool, fused_gelu, true, "as the server's --fused_gelu");
ABSL_FLAG(bool, cuda_graphs, true, "as the server's --cuda_graphs");
ABSL_FLAG(int, batch_size, 32,
          "images per model batch (the server's --batch_size gives byte-identical features)");
ABSL_FLAG(int, decode_threads, 2, "image decoding threads");
ABSL_FLAG(int, cpu_threads, 0, "LibTorch intra-op threads (0 = one per core)");
ABSL_FLAG(int64_t, pause_after_chunks, -1,
          "tests only: after this many chunks, wait to be killed (a kill mid-shard)");

int main(int argc, char** argv) {
  updp::PreferPassiveOpenMp(argv);
  absl::SetProgramUsageMessage(
      "updp-embed-shard --items FILE --out DIR --model_dir DIR --shards N [--shard I]");
  updp::ShowOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  const auto usage = [](const std::string& msg) {
    std::cerr << "updp-embed-shard: " << msg << " (see --help)\n";
    return 2;
  };
  updp::engine::ShardOptions o;
  o.items_path = absl::GetFlag(FLAGS_items);
  o.out_dir = absl::GetFlag(FLAGS_out);
  o.shards = absl::GetFlag(FLAGS_shards);
  o.shard = absl::GetFlag(FLAGS_shard);
  if (o.items_path.empty()) return usage("--items is required");
  if (o.out_dir.empty()) return usage("--out is required");
  if (absl::GetFlag(FLAGS_model_dir).empty()) return usage("--model_dir is required");
  if (o.shards < 1) return usage("--shards must be >= 1");
  if (o.shard < 0) {
    const char* index = std::getenv("JOB_COMPLETION_INDEX");
    if (index == nullptr) return usage("--shard is required (or JOB_COMPLETION_INDEX)");
    if (!absl::SimpleAtoi(index, &o.shard) || o.shard < 0) {
      return usage(std::string("JOB_COMPLETION_INDEX='") + index + "' is not an index");
    }
  }
  if (o.shard >= o.shards) {
    return usage("shard " + std::to_string(o.shard) + " is not below --shards " +
                 std::to_string(o.shards));
  }
  o.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.model.model_dir = absl::GetFlag(FLAGS_model_dir);
  o.model.device = absl::GetFlag(FLAGS_device);
  o.model.precision = absl::GetFlag(FLAGS_precision);
  o.model.attention = absl::GetFlag(FLAGS_attention);
  o.model.qformer_precision = absl::GetFlag(FLAGS_qformer_precision);
  o.model.fused_gelu = absl::GetFlag(FLAGS_fused_gelu);
  o.model.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  o.model.decode_threads = absl::GetFlag(FLAGS_decode_threads);
  o.pause_after_chunks = absl::GetFlag(FLAGS_pause_after_chunks);
  if (int t = absl::GetFlag(FLAGS_cpu_threads); t > 0) torch::set_num_threads(t);
  o.log = [&](const std::string& line) {
    std::cerr << "updp-embed-shard[" << o.shard << "/" << o.shards << "]: " << line << std::endl;
  };
  auto r = updp::engine::RunShard(o);
  if (!r.ok()) {
    std::cerr << "updp-embed-shard[" << o.shard << "/" << o.shards << "]: error: " << r.status()
              << std::endl;
    return 1;
  }
  std::cerr << "updp-embed-shard[" << o.shard << "/" << o.shards << "]: done: chunks "
            << r->first_chunk << ".." << r->last_chunk - 1 << ", " << r->computed
            << " embedded now, " << r->reused << " already done; " << r->embedded << " images, "
            << r->failed << " failed, " << r->seconds << " s" << std::endl;
  return 0;
}
