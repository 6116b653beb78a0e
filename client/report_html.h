// The selection report as one self-contained HTML page (updpctl report): the dataset
// and job, the clusters, a 2-D map of the features with the picks, and the picks'
// thumbnails grouped by cluster. Everything is inline (CSS, SVG, script, thumbnails as
// data: URLs); no external reference. Every string from the server is escaped.
#ifndef UPDP_CLIENT_REPORT_HTML_H_
#define UPDP_CLIENT_REPORT_HTML_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/updp/v1/updp.pb.h"

namespace updp::client {

struct ReportData {
  v1::SelectionReport summary;        // the first page (its picks moved to `picks`)
  std::vector<v1::ReportPick> picks;  // every page's, in rank order
};

struct ThumbnailCounts {
  int64_t made = 0;     // picks with a thumbnail
  int64_t failed = 0;   // picks whose image could not be read or decoded
  int64_t omitted = 0;  // picks beyond max_thumbnails, or no image (embeddings)
};
ThumbnailCounts CountThumbnails(const ReportData& d);

// & < > " ' as character references: safe in text and in double-quoted attributes.
std::string HtmlEscape(std::string_view s);

// The page. Its own script records what a browser saw once it loaded: on <body>,
// data-errors (script errors and failed resource loads), data-thumbs-ok (thumbnails
// decoded: complete with a natural width) and data-checked="1"; the messages go into
// #page-errors. data-thumbs-expected is the number of thumbnails in the page.
std::string ReportHtml(const ReportData& d);

}  // namespace updp::client

#endif  // UPDP_CLIENT_REPORT_HTML_H_
