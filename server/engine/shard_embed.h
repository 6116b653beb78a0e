// One shard of a scale-out embedding run (the body of updp-embed-shard): embeds the
// chunks [first, last) that ShardChunkRange gives shard `shard` of `shards` of an
// items file, with the server's model code, into `out_dir` in the server's chunk
// format (chunk_NNNNNN.safetensors, byte-identical to a server EMBED with the same
// model settings and batch size), each followed by its sidecar chunk_NNNNNN.json (the
// commit point). A rerun skips committed chunks, so a restarted pod resumes.
#ifndef UPDP_SERVER_ENGINE_SHARD_EMBED_H_
#define UPDP_SERVER_ENGINE_SHARD_EMBED_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "server/engine/model_load.h"

namespace updp::engine {

struct ShardOptions {
  std::string items_path;
  std::string out_dir;
  int shards = 1;
  int shard = 0;
  int batch_size = 32;  // the server's --batch_size, for byte-identical features
  ModelSettings model;
  // Tests only: after committing this many chunks in this run, stop working and wait
  // to be killed (a deterministic "killed mid-shard"). < 0: never.
  int64_t pause_after_chunks = -1;
  std::function<void(const std::string&)> log;  // progress lines (may be empty)
};

struct ShardResult {
  int64_t first_chunk = 0, last_chunk = 0;  // [first, last)
  int64_t computed = 0, reused = 0;         // chunks
  int64_t embedded = 0, failed = 0;         // images in this run
  double seconds = 0;
  double images_per_second = 0;
};

// INVALID_ARGUMENT for bad options or an items file / directory that does not fit;
// other codes for I/O and model errors. Writes the shard's done file on success.
absl::StatusOr<ShardResult> RunShard(const ShardOptions& options);

}  // namespace updp::engine

#endif  // UPDP_SERVER_ENGINE_SHARD_EMBED_H_
