// ServerCore::GetSelectionReport: reads the map the SELECT job stored, pages through
// its picks and asks the engine for their thumbnails.
#include "server/core/selection_report.h"

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/core/server_core.h"
#include "server/util/atomic_file.h"
#include "server/util/error_text.h"

namespace updp::core {
namespace {

using nlohmann::json;

absl::Status CheckRange(const char* field, int* v, int def, int max) {
  if (*v < 0 || *v > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", *v, " is out of range (0 for the default ", def, ", at most ", max, ")"));
  }
  if (*v == 0) *v = def;
  return absl::OkStatus();
}

bool IntArray(const json& j, const char* key, size_t n) {
  if (!j.contains(key) || !j[key].is_array() || j[key].size() != n) return false;
  for (const auto& v : j[key]) {
    if (!v.is_number_integer()) return false;
  }
  return true;
}

bool NumberArray(const json& j, const char* key, size_t n) {
  if (!j.contains(key) || !j[key].is_array() || j[key].size() != n) return false;
  for (const auto& v : j[key]) {
    if (!v.is_number()) return false;
  }
  return true;
}

// The stored map into `out`; false when the file is not what the engine writes.
bool ParseMap(const std::string& text, SelectionReport* out) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return false;
  if (!j.contains("clusters") || !j["clusters"].is_array() || !j.contains("points") ||
      !j["points"].is_object() || !j.contains("explained") || !NumberArray(j, "explained", 2)) {
    return false;
  }
  for (const auto& c : j["clusters"]) {
    if (!c.is_array() || c.size() != 3 || !IntArray(json{{"c", c}}, "c", 3)) return false;
    out->clusters.push_back({c[0].get<int64_t>(), c[1].get<int64_t>(), c[2].get<int64_t>()});
  }
  const json& p = j["points"];
  if (!p.contains("x") || !p["x"].is_array()) return false;
  const size_t n = p["x"].size();
  if (!NumberArray(p, "x", n) || !NumberArray(p, "y", n) || !IntArray(p, "item", n) ||
      !IntArray(p, "rank", n) || !IntArray(p, "cluster", n)) {
    return false;
  }
  out->points.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    out->points.push_back({p["x"][i].get<float>(), p["y"][i].get<float>(),
                           p["item"][i].get<int64_t>(), p["rank"][i].get<int64_t>(),
                           p["cluster"][i].get<int64_t>()});
  }
  out->explained[0] = j["explained"][0].get<double>();
  out->explained[1] = j["explained"][1].get<double>();
  if (j.contains("sample_rows") && j["sample_rows"].is_number_integer()) {
    out->sample_rows = j["sample_rows"].get<int64_t>();
  }
  if (j.contains("rule") && j["rule"].is_string()) out->cluster_rule = j["rule"].get<std::string>();
  return true;
}

// The report cluster of each pick, by rank (1-based; [0] unused), from the map's
// points (every pick is one).
std::vector<int64_t> ClusterByRank(const SelectionReport& r, int64_t total) {
  std::vector<int64_t> out(total + 1, -1);
  for (const auto& p : r.points) {
    if (p.rank > 0 && p.rank <= total) out[p.rank] = p.cluster;
  }
  return out;
}

}  // namespace

absl::StatusOr<SelectionReport> ServerCore::GetSelectionReport(const SelectionReportRequest& req) {
  if (req.job_id.empty()) return absl::InvalidArgumentError("job_id: required");
  auto job = jobs_->Get(req.job_id);
  if (!job.ok()) return job.status();
  if (!std::holds_alternative<SelectParams>(job->params)) {
    return absl::InvalidArgumentError(absl::StrCat("job_id: '", req.job_id, "' is a ",
                                                   JobKindName(job->kind),
                                                   " job; a report is made of a SELECT job"));
  }
  if (job->state != JobState::kSucceeded) {
    return absl::FailedPreconditionError(absl::StrCat("job_id: '", req.job_id, "' is ",
                                                      JobStateName(job->state),
                                                      "; its report exists once it SUCCEEDED"));
  }
  SelectionReportRequest r = req;
  if (auto s =
          CheckRange("thumbnail_size", &r.thumbnail_size, kDefaultThumbnailSize, kMaxThumbnailSize);
      !s.ok()) {
    return s;
  }
  if (auto s = CheckRange("page_size", &r.page_size, kDefaultReportPageSize, kMaxReportPageSize);
      !s.ok()) {
    return s;
  }
  if (auto s = CheckRange("max_thumbnails", &r.max_thumbnails, kMaxThumbnails, kMaxThumbnails);
      !s.ok()) {
    return s;
  }
  int64_t offset = 0;
  if (!r.page_token.empty() && (!absl::SimpleAtoi(r.page_token, &offset) || offset < 0)) {
    return absl::InvalidArgumentError("page_token: invalid");
  }
  auto dir = JobDir(r.job_id);
  if (!dir.ok()) return dir.status();
  auto text = ReadFile(*dir + "/" + kSelectionMapFile);
  if (!text.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job_id: '", r.job_id,
                     "' has no stored report map (it was selected before reports existed); run "
                     "the selection again to get a report"));
  }
  SelectionReport out;
  if (!ParseMap(*text, &out)) {
    return absl::DataLossError(
        absl::StrCat("job_id: '", r.job_id, "': its ", kSelectionMapFile, " is corrupt"));
  }
  auto total = store_->CountSelection(r.job_id);
  if (!total.ok()) return total.status();
  out.total_picks = *total;
  const std::vector<int64_t> cluster_of = ClusterByRank(out, out.total_picks);
  auto d = store_->GetDataset(job->dataset);
  if (!d.ok()) return d.status();
  out.has_images = d->source_kind != SourceKind::kEmbeddings;
  out.summary = r.page_token.empty();
  if (out.summary) {
    out.dataset = std::move(*d);
    out.job = std::move(*job);
  } else {  // the summary travels once
    out.clusters.clear();
    out.points.clear();
  }
  out.thumbnail_size = r.thumbnail_size;
  auto rows = store_->GetSelection(r.job_id, offset, r.page_size);
  if (!rows.ok()) return rows.status();
  int64_t bytes = 0;
  for (auto& row : *rows) {
    if (!out.picks.empty() && bytes >= kReportPageBytes) break;  // the rest on the next page
    ReportPick p;
    p.report_cluster = row.rank <= out.total_picks ? cluster_of[row.rank] : -1;
    if (out.has_images && !row.path.empty() && row.rank <= r.max_thumbnails) {
      auto t = engine_ ? engine_->Thumbnail(row.path, r.thumbnail_size)
                       : absl::StatusOr<std::string>(absl::UnavailableError("no engine"));
      if (t.ok()) {
        p.thumbnail = std::move(*t);
        bytes += static_cast<int64_t>(p.thumbnail.size());
      } else {
        p.thumbnail_error = CleanErrorText(t.status().message(), 300);
      }
    }
    p.row = std::move(row);
    out.picks.push_back(std::move(p));
  }
  const int64_t end = offset + static_cast<int64_t>(out.picks.size());
  if (end < out.total_picks) out.next_page_token = std::to_string(end);
  return out;
}

}  // namespace updp::core
