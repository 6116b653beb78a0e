// A finished selection's report (GetSelectionReport): the dataset and job, the
// clusters and the 2-D map the SELECT job stored (server/select/pick_map.h), and the
// picks with JPEG thumbnails made by the engine, page by page.
#ifndef UPDP_SERVER_CORE_SELECTION_REPORT_H_
#define UPDP_SERVER_CORE_SELECTION_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "server/core/types.h"

namespace updp::core {

// In the SELECT job's folder: its clusters and map, as JSON (written by the engine).
inline constexpr char kSelectionMapFile[] = "report_map.json";

// Bounds of the request's fields.
inline constexpr int kDefaultThumbnailSize = 128;
inline constexpr int kMaxThumbnailSize = 512;
inline constexpr int kDefaultReportPageSize = 100;
inline constexpr int kMaxReportPageSize = 1000;
inline constexpr int kMaxThumbnails = 2000;
// A page ends once its thumbnails reach this many bytes (gRPC's default 4 MiB
// message limit on the client stays far away).
inline constexpr int64_t kReportPageBytes = int64_t{2} << 20;

struct SelectionReportRequest {
  std::string job_id;
  int thumbnail_size = 0;  // 0: kDefaultThumbnailSize
  int page_size = 0;       // 0: kDefaultReportPageSize
  std::string page_token;
  int max_thumbnails = 0;  // 0: kMaxThumbnails
};

struct ReportCluster {
  int64_t id = 0;
  int64_t size = 0;
  int64_t picks = 0;
};

struct ReportPoint {
  float x = 0, y = 0;
  int64_t item_idx = 0;
  int64_t rank = 0;  // 0: not a pick
  int64_t cluster = 0;
};

struct ReportPick {
  SelectionRow row;
  int64_t report_cluster = 0;
  std::string thumbnail;  // JPEG; empty when none was made
  std::string thumbnail_error;
};

struct SelectionReport {
  // The first page only (page_token empty).
  bool summary = false;
  DatasetInfo dataset;
  JobInfo job;
  std::string cluster_rule;
  std::vector<ReportCluster> clusters;
  std::vector<ReportPoint> points;
  double explained[2] = {0, 0};
  int64_t sample_rows = 0;
  // Every page.
  bool has_images = false;
  int thumbnail_size = 0;
  std::vector<ReportPick> picks;
  std::string next_page_token;
  int64_t total_picks = 0;
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_SELECTION_REPORT_H_
