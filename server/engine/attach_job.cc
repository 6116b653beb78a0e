// The EMBED job body that attaches features computed elsewhere (updp-embed-shard
// output) instead of computing them: every chunk of the dataset must be there, from
// this dataset's items and this server's model, and every item must have exactly one
// feature row or be listed as failed. Then all chunk rows are committed in one
// transaction, pointing at the files where they are (no copy).
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/engine/feature_io.h"
#include "server/engine/job_util.h"
#include "server/engine/model_engine.h"
#include "server/model/blip2_model.h"
#include "server/model/safetensors.h"
#include "server/util/atomic_file.h"
#include "server/util/shard_format.h"

namespace updp::engine {

namespace fs = std::filesystem;
using core::JobContext;

namespace {

absl::Status Bad(const std::string& file, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("dir: ", file, ": ", what));
}

// Chunk numbers of the chunk files and sidecars in `dir` (names this code writes).
absl::StatusOr<std::set<int64_t>> ListedChunks(const std::string& dir) {
  static const std::regex kName(R"(chunk_(\d{6,})\.(json|safetensors))");
  std::set<int64_t> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::smatch m;
    const std::string name = it->path().filename().string();
    if (std::regex_match(name, m, kName)) out.insert(std::stoll(m[1].str()));
  }
  if (ec) return absl::InternalError(absl::StrCat("dir: cannot list '", dir, "': ", ec.message()));
  return out;
}

}  // namespace

absl::Status ModelEngine::RunAttach(JobContext& ctx) {
  const core::JobInfo& job = ctx.job();
  const auto& p = std::get<core::EmbedParams>(job.params);
  core::Store& store = core_->store();
  const auto start = std::chrono::steady_clock::now();
  // Resolved again: the directory (or a link on its way) may have changed since the
  // request was checked.
  auto dir = core_->paths().Resolve("dir", p.attach_dir);
  if (!dir.ok()) return dir.status();
  auto d = store.GetDataset(job.dataset);
  if (!d.ok()) return d.status();
  const int64_t n = d->num_items, cs = std::max<int64_t>(1, d->chunk_size);
  const int64_t chunks = (n + cs - 1) / cs;
  const std::string& identity = model_->identity();
  const int64_t dim = model_->config().image_text_hidden_size;
  auto listed = ListedChunks(*dir);
  if (!listed.ok()) return listed.status();
  if (!listed->empty() && *listed->rbegin() >= chunks) {
    return Bad(ChunkName(*listed->rbegin()),
               absl::StrCat("beyond the dataset's ", chunks, " chunks (", n, " items of ", cs,
                            "): features of another dataset?"));
  }
  core::Progress pr;
  pr.stage = "attach";
  pr.total = n;
  ctx.SetProgress(pr);
  std::vector<core::FeatureChunk> rows;
  std::vector<core::FailedItemRow> failed;
  int64_t feature_rows = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    if (ctx.Cancelled()) return core::JobStopped();
    const int64_t begin = c * cs, end = std::min(n, begin + cs);
    auto items = store.ItemsRange(job.dataset, begin, end);
    if (!items.ok()) return items.status();
    if (static_cast<int64_t>(items->size()) != end - begin) {
      return absl::DataLossError(absl::StrCat("dataset '", job.dataset, "': items ", begin, "..",
                                              end - 1, " are not all stored"));
    }
    const std::string sidecar_name = shard::SidecarName(c);
    const std::string chunk_name = ChunkName(c);
    std::error_code ec;
    if (!fs::exists(*dir + "/" + sidecar_name, ec)) {
      return Bad(sidecar_name,
                 absl::StrCat("missing: items ", begin, "..", end - 1, " (first '",
                              (*items)[0].item_id, "') have no features; run their shard again"));
    }
    auto text = ReadFile(*dir + "/" + sidecar_name);
    if (!text.ok()) return Bad(sidecar_name, std::string(text.status().message()));
    auto s = shard::ParseSidecar(*text, sidecar_name);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("dir: ", s.status().message()));
    // The dataset's name may differ (registered again under another name); its items
    // must not: the layout here, the ids digest below.
    if (s->num_items != n || s->chunk_size != cs || s->chunk != c || s->begin != begin ||
        s->end != end) {
      return Bad(sidecar_name,
                 absl::StrCat("written for dataset '", s->dataset, "' (", s->num_items,
                              " items, chunk size ", s->chunk_size, ", chunk ", s->chunk,
                              "), not for '", job.dataset, "' (", n, " items, chunk size ", cs,
                              "); embed from this dataset's items file"));
    }
    if (s->model_identity != identity) {
      return absl::FailedPreconditionError(
          absl::StrCat("dir: ", sidecar_name, ": embedded with model ", s->model_identity,
                       ", the server runs model ", identity, "; embed with the same checkpoint"));
    }
    if (s->dim != dim || s->dtype != "float16") {
      return Bad(sidecar_name, absl::StrCat(s->dtype, " features of dimension ", s->dim,
                                            "; the model gives float16 of ", dim));
    }
    shard::IdsDigest digest;
    for (const auto& it : *items) digest.Add(it.item_id);
    if (digest.Hex() != s->ids_digest) {
      return Bad(sidecar_name,
                 absl::StrCat("its items ", begin, "..", end - 1,
                              " are not this dataset's (was it registered again since the "
                              "items file was written?)"));
    }
    auto opened = model::SafetensorsFile::Open(*dir + "/" + chunk_name);
    if (!opened.ok()) return Bad(chunk_name, std::string(opened.status().message()));
    const auto& info = (*opened)->tensors();
    if (!info.count("features") || !info.count("index"))
      return Bad(chunk_name, "not a feature chunk");
    const auto& fi = info.at("features");
    const auto& ii = info.at("index");
    if (fi.dtype != "F16" || fi.shape.size() != 2 || fi.shape[0] != s->rows || fi.shape[1] != dim ||
        ii.dtype != "I64" || ii.shape.size() != 1 || ii.shape[0] != s->rows) {
      return Bad(chunk_name, absl::StrCat("tensors do not match ", sidecar_name, " (", s->rows,
                                          " rows of float16 [", dim, "] and an int64 index)"));
    }
    auto index = (*opened)->Get("index", torch::kLong);
    if (!index.ok()) return Bad(chunk_name, std::string(index.status().message()));
    // Every item of the chunk exactly once: a feature row or a failed entry.
    std::vector<char> seen(end - begin, 0);
    const auto mark = [&](int64_t i, const char* as) -> absl::Status {
      if (i < begin || i >= end) {
        return Bad(chunk_name, absl::StrCat(as, " item index ", i, " is outside the chunk's ",
                                            begin, "..", end - 1));
      }
      if (seen[i - begin]++) {
        return Bad(chunk_name, absl::StrCat("item '", (*items)[i - begin].item_id, "' (index ", i,
                                            ") appears twice"));
      }
      return absl::OkStatus();
    };
    const int64_t* a = index->data_ptr<int64_t>();
    for (int64_t r = 0; r < s->rows; ++r) {
      if (auto st = mark(a[r], "feature row's"); !st.ok()) return st;
    }
    for (const auto& f : s->failed) {
      if (auto st = mark(f.index, "failed"); !st.ok()) return st;
      if (f.item_id != (*items)[f.index - begin].item_id) {
        return Bad(sidecar_name, absl::StrCat("failed item '", f.item_id, "' is not item ", f.index,
                                              " ('", (*items)[f.index - begin].item_id, "')"));
      }
      failed.push_back({f.item_id, (*items)[f.index - begin].path, f.error});
    }
    for (int64_t i = begin; i < end; ++i) {
      if (!seen[i - begin]) {
        return Bad(chunk_name, absl::StrCat("item '", (*items)[i - begin].item_id, "' (index ", i,
                                            ") has no feature row and is not listed as failed"));
      }
    }
    rows.push_back({c, s->rows, *dir + "/" + chunk_name, end});
    feature_rows += s->rows;
    pr.done = end;
    ctx.SetProgress(pr);
  }
  if (auto st = store.AttachFeatureChunks(job.dataset, core::kImageFeatures, rows, failed);
      !st.ok()) {
    return st;
  }
  pr.done = n;
  pr.message = absl::StrCat(feature_rows, " feature rows attached from ", *dir, ", ", failed.size(),
                            " failed images");
  ctx.SetProgress(pr);
  ctx.SetResult(nlohmann::json{{"attached_from", *dir},
                               {"chunks_total", chunks},
                               {"feature_rows", feature_rows},
                               {"failed", failed.size()},
                               {"seconds", Seconds(start)}}
                    .dump());
  return absl::OkStatus();
}

}  // namespace updp::engine
