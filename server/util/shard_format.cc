#include "server/util/shard_format.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <tuple>
#include <type_traits>

#include "absl/strings/str_cat.h"

namespace updp::shard {

using nlohmann::json;

namespace {

// json::get throws on a wrong type; these return a Status naming the field instead.
template <typename T>
absl::Status Field(const json& j, const char* key, T* out, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) return absl::InvalidArgumentError(absl::StrCat(where, ": no \"", key, "\""));
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": \"", key, "\" is not a string"));
    }
    *out = it->template get<std::string>();
  } else {
    if (!it->is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": \"", key, "\" is not an integer"));
    }
    *out = it->template get<T>();
  }
  return absl::OkStatus();
}

}  // namespace

std::string ItemsHeaderLine(const ItemsHeader& h) {
  return json{{"format", kItemsFormat},
              {"version", kFormatVersion},
              {"dataset", h.dataset},
              {"num_items", h.num_items},
              {"chunk_size", h.chunk_size}}
      .dump();
}

std::string ItemLine(const ItemEntry& e) {
  // Paths are bytes from the file system; replace (never throw on) invalid UTF-8.
  return json{{"index", e.index}, {"id", e.item_id}, {"path", e.path}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<ItemsHeader> ReadItems(const std::string& path, const ItemRange& range,
                                      std::vector<ItemEntry>* out) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the items file"));
  std::string line;
  int64_t line_no = 0;
  ItemsHeader h;
  bool have_header = false;
  int64_t next = 0, begin = 0, end = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const std::string where = absl::StrCat(path, ":", line_no);
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
    }
    if (!have_header) {
      std::string format;
      int64_t version = 0;
      if (auto s = Field(j, "format", &format, where); !s.ok()) return s;
      if (format != kItemsFormat) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": not an items file (format \"",
                                                       format,
                                                       "\"; write one with "
                                                       "`updpctl dataset items NAME --out FILE`)"));
      }
      if (auto s = Field(j, "version", &version, where); !s.ok()) return s;
      if (version != kFormatVersion) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": items file version ", version,
                                                       ", this build reads ", kFormatVersion));
      }
      if (auto s = Field(j, "dataset", &h.dataset, where); !s.ok()) return s;
      if (auto s = Field(j, "num_items", &h.num_items, where); !s.ok()) return s;
      if (auto s = Field(j, "chunk_size", &h.chunk_size, where); !s.ok()) return s;
      if (h.num_items < 0 || h.chunk_size < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": num_items must be >= 0 and chunk_size >= 1"));
      }
      have_header = true;
      std::tie(begin, end) = range(h);
      continue;
    }
    ItemEntry e;
    if (auto s = Field(j, "index", &e.index, where); !s.ok()) return s;
    if (e.index != next) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": index ", e.index, " where ", next, " was expected"));
    }
    if (next >= h.num_items) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": more items than the header's ", h.num_items));
    }
    ++next;
    if (e.index < begin || e.index >= end) continue;
    if (auto s = Field(j, "id", &e.item_id, where); !s.ok()) return s;
    if (auto s = Field(j, "path", &e.path, where); !s.ok()) return s;
    out->push_back(std::move(e));
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  if (!have_header) return absl::InvalidArgumentError(absl::StrCat(path, ": empty items file"));
  if (next != h.num_items) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", next, " items, the header says ", h.num_items, " (truncated?)"));
  }
  return h;
}

std::pair<int64_t, int64_t> ShardChunkRange(int64_t num_chunks, int shards, int shard) {
  // 128-bit free: num_chunks * shards stays far below 2^63 for any real dataset.
  return {num_chunks * shard / shards, num_chunks * (shard + 1) / shards};
}

std::string SidecarName(int64_t chunk) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "chunk_%06lld.json", static_cast<long long>(chunk));
  return buf;
}

std::string DoneName(int shard, int shards) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "shard_%04d_of_%04d.done.json", shard, shards);
  return buf;
}

std::string SidecarToJson(const ChunkSidecar& s) {
  json failed = json::array();
  for (const auto& f : s.failed) {
    failed.push_back({{"index", f.index}, {"id", f.item_id}, {"path", f.path}, {"error", f.error}});
  }
  return json{{"format", kSidecarFormat},
              {"version", kFormatVersion},
              {"dataset", s.dataset},
              {"num_items", s.num_items},
              {"chunk_size", s.chunk_size},
              {"chunk", s.chunk},
              {"begin", s.begin},
              {"end", s.end},
              {"rows", s.rows},
              {"dim", s.dim},
              {"dtype", s.dtype},
              {"model_identity", s.model_identity},
              {"ids_digest", s.ids_digest},
              {"failed", failed},
              {"shard", s.shard},
              {"shards", s.shards}}
             .dump(1, ' ', false, json::error_handler_t::replace) +
         "\n";
}

absl::StatusOr<ChunkSidecar> ParseSidecar(std::string_view text, const std::string& path) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  ChunkSidecar s;
  std::string format;
  int64_t version = 0;
  if (auto st = Field(j, "format", &format, path); !st.ok()) return st;
  if (format != kSidecarFormat) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a feature chunk sidecar"));
  }
  if (auto st = Field(j, "version", &version, path); !st.ok()) return st;
  if (version != kFormatVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": sidecar version ", version, ", this build reads ", kFormatVersion));
  }
  for (auto [key, out] : std::initializer_list<std::pair<const char*, std::string*>>{
           {"dataset", &s.dataset},
           {"dtype", &s.dtype},
           {"model_identity", &s.model_identity},
           {"ids_digest", &s.ids_digest}}) {
    if (auto st = Field(j, key, out, path); !st.ok()) return st;
  }
  for (auto [key, out] :
       std::initializer_list<std::pair<const char*, int64_t*>>{{"num_items", &s.num_items},
                                                               {"chunk_size", &s.chunk_size},
                                                               {"chunk", &s.chunk},
                                                               {"begin", &s.begin},
                                                               {"end", &s.end},
                                                               {"rows", &s.rows},
                                                               {"dim", &s.dim}}) {
    if (auto st = Field(j, key, out, path); !st.ok()) return st;
  }
  if (auto st = Field(j, "shard", &s.shard, path); !st.ok()) return st;
  if (auto st = Field(j, "shards", &s.shards, path); !st.ok()) return st;
  auto f = j.find("failed");
  if (f == j.end() || !f->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"failed\" is not a list"));
  }
  for (const json& e : *f) {
    if (!e.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": a failed entry is not an object"));
    }
    FailedEntry fe;
    if (auto st = Field(e, "index", &fe.index, path); !st.ok()) return st;
    if (auto st = Field(e, "id", &fe.item_id, path); !st.ok()) return st;
    if (auto st = Field(e, "path", &fe.path, path); !st.ok()) return st;
    if (auto st = Field(e, "error", &fe.error, path); !st.ok()) return st;
    s.failed.push_back(std::move(fe));
  }
  return s;
}

void IdsDigest::Add(std::string_view id) {
  h_ = Fnv1a(h_, id);
  h_ = Fnv1a(h_, "\n");
}

std::string IdsDigest::Hex() const { return Hex64(h_); }

}  // namespace updp::shard
