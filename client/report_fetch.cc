#include "client/report_fetch.h"

#include <utility>

namespace updp::client {

grpc::Status FetchReport(v1::Updp::Stub* stub, const ReportRequest& req, ReportData* out,
                         const std::function<void(int64_t, int64_t)>& progress) {
  std::string token;
  bool first = true;
  do {
    v1::GetSelectionReportRequest r;
    r.set_job_id(req.job_id);
    r.set_thumbnail_size(req.thumbnail_size);
    r.set_max_thumbnails(req.max_thumbnails);
    r.set_page_token(token);
    v1::SelectionReport page;
    grpc::ClientContext ctx;
    if (auto s = stub->GetSelectionReport(&ctx, r, &page); !s.ok()) return s;
    for (auto& p : *page.mutable_picks()) out->picks.push_back(std::move(p));
    page.clear_picks();
    token = page.next_page_token();
    if (first) out->summary = std::move(page);
    first = false;
    if (progress) progress(static_cast<int64_t>(out->picks.size()), out->summary.total_picks());
  } while (!token.empty());
  return grpc::Status::OK;
}

}  // namespace updp::client
