// The files that carry embedding work out of the server and back (scale-out):
//  - the items file: a registered dataset's item list as JSON Lines, written by
//    `updpctl dataset items` and read by `updp-embed-shard`; a header line, then one
//    {"index","id","path"} object per item in index order;
//  - the chunk sidecar chunk_NNNNNN.json next to each feature chunk a shard worker
//    writes: which dataset, items, model, shape and failed images the chunk holds. It
//    is written after the chunk file, so it is the chunk's commit point;
//  - the shard's done file, a summary for operators.
// No LibTorch and no gRPC here: the CLI writes items files, the worker and the server
// read them.
#ifndef UPDP_SERVER_UTIL_SHARD_FORMAT_H_
#define UPDP_SERVER_UTIL_SHARD_FORMAT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/util/fnv1a.h"

namespace updp::shard {

inline constexpr char kItemsFormat[] = "updp-items";
inline constexpr char kSidecarFormat[] = "updp-feature-chunk";
inline constexpr int kFormatVersion = 1;

struct ItemsHeader {
  std::string dataset;
  int64_t num_items = 0;
  int64_t chunk_size = 0;  // the dataset's items per feature chunk
};

struct ItemEntry {
  int64_t index = 0;
  std::string item_id;
  std::string path;
};

std::string ItemsHeaderLine(const ItemsHeader& h);  // one JSON object, no newline
std::string ItemLine(const ItemEntry& e);

// Reads an items file, keeping the items in the index range [begin, end) that
// `range` returns for its header. Every line is checked: the header first, indices
// dense and in order, as many items as the header says. Errors name the file and line.
using ItemRange = std::function<std::pair<int64_t, int64_t>(const ItemsHeader&)>;
absl::StatusOr<ItemsHeader> ReadItems(const std::string& path, const ItemRange& range,
                                      std::vector<ItemEntry>* out);

// Chunks [first, last) of shard `shard` of `shards` when a dataset has `num_chunks`
// chunks: contiguous ranges whose sizes differ by at most one.
std::pair<int64_t, int64_t> ShardChunkRange(int64_t num_chunks, int shards, int shard);

struct FailedEntry {
  int64_t index = 0;
  std::string item_id;
  std::string path;
  std::string error;
};

struct ChunkSidecar {
  std::string dataset;
  int64_t num_items = 0;
  int64_t chunk_size = 0;
  int64_t chunk = 0;
  int64_t begin = 0, end = 0;  // the chunk's item indices [begin, end)
  int64_t rows = 0;            // feature rows in the chunk file (items that did not fail)
  int64_t dim = 0;
  std::string dtype = "float16";
  std::string model_identity;
  std::string ids_digest;  // IdsDigest of the chunk's item ids, in index order
  std::vector<FailedEntry> failed;
  int shard = 0, shards = 0;
};

std::string SidecarName(int64_t chunk);  // chunk_NNNNNN.json
std::string SidecarToJson(const ChunkSidecar& s);
// INVALID_ARGUMENT naming `path` when the text is not a sidecar of this version.
absl::StatusOr<ChunkSidecar> ParseSidecar(std::string_view text, const std::string& path);

// FNV-1a 64 over each id followed by '\n', as 16 hex digits: catches an items file or
// feature directory of another dataset (not a cryptographic check).
class IdsDigest {
 public:
  void Add(std::string_view id);
  std::string Hex() const;

 private:
  uint64_t h_ = kFnv1aOffset;
};

std::string DoneName(int shard, int shards);  // shard_NNNN_of_NNNN.done.json

}  // namespace updp::shard

#endif  // UPDP_SERVER_UTIL_SHARD_FORMAT_H_
