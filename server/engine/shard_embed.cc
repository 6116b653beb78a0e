#include "server/engine/shard_embed.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/str_cat.h"
#include "server/engine/feature_io.h"
#include "server/engine/job_util.h"
#include "server/model/blip2_model.h"
#include "server/model/encoder.h"
#include "server/model/safetensors.h"
#include "server/util/atomic_file.h"
#include "server/util/shard_format.h"

namespace updp::engine {

namespace fs = std::filesystem;
using shard::ChunkSidecar;
using shard::ItemEntry;
using shard::ItemsHeader;

namespace {

// A committed chunk: its sidecar parses, describes this chunk of this dataset, and
// the chunk file it commits holds as many rows. Anything else is embedded again; a
// sidecar of another dataset is an error (one output directory per dataset).
absl::StatusOr<std::optional<ChunkSidecar>> Committed(const std::string& dir, const ItemsHeader& h,
                                                      int64_t chunk) {
  const std::string sidecar_path = dir + "/" + shard::SidecarName(chunk);
  std::error_code ec;
  if (!fs::exists(sidecar_path, ec)) return std::optional<ChunkSidecar>();
  auto text = ReadFile(sidecar_path);
  if (!text.ok()) return text.status();
  auto s = shard::ParseSidecar(*text, sidecar_path);
  if (!s.ok()) return std::optional<ChunkSidecar>();  // rewritten below
  if (s->dataset != h.dataset || s->num_items != h.num_items || s->chunk_size != h.chunk_size ||
      s->chunk != chunk) {
    return absl::InvalidArgumentError(
        absl::StrCat(sidecar_path, ": belongs to dataset '", s->dataset, "' (", s->num_items,
                     " items, chunk size ", s->chunk_size, "), not to the items file's '",
                     h.dataset, "' (", h.num_items, " items, chunk size ", h.chunk_size,
                     "); use one --out directory per dataset"));
  }
  auto f = model::SafetensorsFile::Open(dir + "/" + ChunkName(chunk));
  if (!f.ok()) return std::optional<ChunkSidecar>();
  auto it = (*f)->tensors().find("features");
  if (it == (*f)->tensors().end() || it->second.shape.size() != 2 ||
      it->second.shape[0] != s->rows) {
    return std::optional<ChunkSidecar>();
  }
  return std::optional<ChunkSidecar>(std::move(*s));
}

}  // namespace

absl::StatusOr<ShardResult> RunShard(const ShardOptions& o) {
  const auto log = [&](const std::string& line) {
    if (o.log) o.log(line);
  };
  if (o.shards < 1) return absl::InvalidArgumentError("shards: must be >= 1");
  if (o.shard < 0 || o.shard >= o.shards) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard: ", o.shard, " is not in [0, ", o.shards, ")"));
  }
  if (o.batch_size < 1) return absl::InvalidArgumentError("batch_size: must be >= 1");
  if (o.out_dir.empty()) return absl::InvalidArgumentError("out: an output directory is required");
  const auto start = std::chrono::steady_clock::now();
  ShardResult r;
  std::vector<ItemEntry> items;
  auto header = shard::ReadItems(
      o.items_path,
      [&](const ItemsHeader& h) {
        const int64_t chunks = (h.num_items + h.chunk_size - 1) / h.chunk_size;
        std::tie(r.first_chunk, r.last_chunk) = shard::ShardChunkRange(chunks, o.shards, o.shard);
        return std::make_pair(r.first_chunk * h.chunk_size,
                              std::min(h.num_items, r.last_chunk * h.chunk_size));
      },
      &items);
  if (!header.ok()) return header.status();
  const ItemsHeader& h = *header;
  const int64_t first_item = r.first_chunk * h.chunk_size;
  log(absl::StrCat("shard ", o.shard, " of ", o.shards, ": dataset '", h.dataset, "', chunks ",
                   r.first_chunk, "..", r.last_chunk - 1, " (", items.size(), " of ", h.num_items,
                   " items)"));
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("out: cannot create '", o.out_dir, "': ", ec.message()));
  }

  std::vector<int64_t> todo;
  std::vector<std::string> identities;  // of the committed chunks
  for (int64_t c = r.first_chunk; c < r.last_chunk; ++c) {
    auto committed = Committed(o.out_dir, h, c);
    if (!committed.ok()) return committed.status();
    if (committed->has_value()) {
      identities.push_back((*committed)->model_identity);
      ++r.reused;
    } else {
      todo.push_back(c);
    }
  }
  if (!todo.empty()) {
    log(absl::StrCat(r.reused, " chunks already committed, ", todo.size(), " to embed; loading ",
                     o.model.model_dir, " on ", o.model.device));
    auto loaded = LoadModelAndEncoder(o.model);
    if (!loaded.ok()) return loaded.status();
    const model::Blip2Model& m = *loaded->model;
    for (const std::string& id : identities) {
      if (id != m.identity()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "out: '", o.out_dir, "' holds chunks embedded with model ", id, "; ", o.model.model_dir,
            " is model ", m.identity(),
            "; use a fresh directory (or the same checkpoint) for one dataset's features"));
      }
    }
    const auto embed_start = std::chrono::steady_clock::now();
    int64_t images = 0, done_in_run = 0;
    for (int64_t c : todo) {
      const int64_t begin = c * h.chunk_size, end = std::min(h.num_items, begin + h.chunk_size);
      std::vector<std::string> paths;
      shard::IdsDigest digest;
      for (int64_t i = begin; i < end; ++i) {
        const ItemEntry& e = items[i - first_item];
        paths.push_back(e.path);
        digest.Add(e.item_id);
      }
      auto enc = loaded->encoder->EncodeAll(
          paths, o.batch_size, [] { return false; }, [](int64_t, int64_t) {});
      std::vector<int64_t> index;
      for (int i : enc.ok) index.push_back(begin + i);
      ChunkSidecar s;
      s.dataset = h.dataset;
      s.num_items = h.num_items;
      s.chunk_size = h.chunk_size;
      s.chunk = c;
      s.begin = begin;
      s.end = end;
      s.rows = static_cast<int64_t>(index.size());
      s.dim = m.config().image_text_hidden_size;
      s.model_identity = m.identity();
      s.ids_digest = digest.Hex();
      s.shard = o.shard;
      s.shards = o.shards;
      for (auto& [i, err] : enc.errors) {
        const ItemEntry& e = items[begin + i - first_item];
        s.failed.push_back({e.index, e.item_id, e.path, err});
      }
      // The chunk file first, then its sidecar: a kill in between leaves a chunk
      // without a sidecar, which the next run writes again.
      auto path = WriteChunk(o.out_dir, c, enc.features, index);
      if (!path.ok()) return path.status();
      if (auto st =
              WriteFileAtomically(o.out_dir + "/" + shard::SidecarName(c), shard::SidecarToJson(s));
          !st.ok()) {
        return st;
      }
      ++r.computed;
      ++done_in_run;
      r.embedded += s.rows;
      r.failed += static_cast<int64_t>(s.failed.size());
      images += end - begin;
      const double rate = images / std::max(1e-9, Seconds(embed_start));
      log(absl::StrCat("chunk ", c, " committed (", r.computed, " of ", todo.size(), "): ", s.rows,
                       " embedded, ", s.failed.size(), " failed, ", static_cast<int64_t>(rate),
                       " images/s"));
      if (o.pause_after_chunks >= 0 && done_in_run >= o.pause_after_chunks &&
          r.computed < static_cast<int64_t>(todo.size())) {
        log("pausing (test hook --pause_after_chunks): waiting to be killed");
        for (;;) ::pause();
      }
    }
    r.images_per_second = images / std::max(1e-9, Seconds(embed_start));
  }
  r.seconds = Seconds(start);
  const nlohmann::json done = {
      {"dataset", h.dataset},        {"shard", o.shard},
      {"shards", o.shards},          {"first_chunk", r.first_chunk},
      {"last_chunk", r.last_chunk},  {"chunks_computed", r.computed},
      {"chunks_reused", r.reused},   {"embedded_this_run", r.embedded},
      {"failed_this_run", r.failed}, {"images_per_second", r.images_per_second},
      {"seconds", r.seconds},        {"model_dir", o.model.model_dir},
      {"device", o.model.device}};
  if (auto st = WriteFileAtomically(o.out_dir + "/" + shard::DoneName(o.shard, o.shards),
                                    done.dump(1) + "\n");
      !st.ok()) {
    return st;
  }
  return r;
}

}  // namespace updp::engine
