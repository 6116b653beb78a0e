// Fetching a selection report, every page (updpctl report).
#ifndef UPDP_CLIENT_REPORT_FETCH_H_
#define UPDP_CLIENT_REPORT_FETCH_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>

#include "client/report_html.h"
#include "proto/updp/v1/updp.grpc.pb.h"

namespace updp::client {

struct ReportRequest {
  std::string job_id;
  int thumbnail_size = 0;  // 0: the server's default
  int max_thumbnails = 0;  // 0: the server's default
};

// All pages of the job's report into *out; `progress` (may be empty) gets the picks
// fetched so far and the total after each page.
grpc::Status FetchReport(v1::Updp::Stub* stub, const ReportRequest& req, ReportData* out,
                         const std::function<void(int64_t done, int64_t total)>& progress);

}  // namespace updp::client

#endif  // UPDP_CLIENT_REPORT_FETCH_H_
