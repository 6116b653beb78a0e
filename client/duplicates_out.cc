#include "client/duplicates_out.h"

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "absl/strings/str_format.h"
#include "client/client_lib.h"

namespace updp::client {
namespace {

void Render(std::ostream& os, DuplicatesFormat format, const std::string& job_id,
            const v1::GetDuplicatesResponse& head, const std::vector<v1::DuplicateItem>& items) {
  switch (format) {
    case DuplicatesFormat::kText: {
      int64_t group = -1;
      for (size_t i = 0; i < items.size(); ++i) {
        const auto& d = items[i];
        if (d.group() != group) {
          group = d.group();
          size_t n = i;
          while (n < items.size() && items[n].group() == group) ++n;
          os << (i ? "\n" : "") << "group " << group << " (" << n - i << " items)\n";
        }
        const std::string& name = d.item().path().empty() ? d.item().item_id() : d.item().path();
        os << (d.representative() ? "  * " : "    ") << absl::StrFormat("%.4f  ", d.similarity())
           << name << "\n";
      }
      break;
    }
    case DuplicatesFormat::kCsv:
      os << "group,representative,item_id,path,similarity\n";
      for (const auto& d : items) {
        os << d.group() << "," << (d.representative() ? 1 : 0) << ","
           << CsvField(d.item().item_id()) << "," << CsvField(d.item().path()) << ","
           << absl::StrFormat("%.6f", d.similarity()) << "\n";
      }
      break;
    case DuplicatesFormat::kJson: {
      nlohmann::json groups = nlohmann::json::array();
      for (const auto& d : items) {
        if (groups.empty() || groups.back()["group"] != d.group()) {
          groups.push_back({{"group", d.group()}, {"items", nlohmann::json::array()}});
        }
        groups.back()["items"].push_back({{"item_id", d.item().item_id()},
                                          {"path", d.item().path()},
                                          {"index", d.item().index()},
                                          {"representative", d.representative()},
                                          {"similarity", d.similarity()}});
      }
      os << nlohmann::json{{"job_id", job_id},
                           {"dataset", head.dataset()},
                           {"threshold", head.threshold()},
                           {"groups", groups}}
                .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
         << "\n";
      break;
    }
  }
}

}  // namespace

bool ParseDuplicatesFormat(const std::string& name, DuplicatesFormat* out) {
  if (name == "text")
    *out = DuplicatesFormat::kText;
  else if (name == "csv")
    *out = DuplicatesFormat::kCsv;
  else if (name == "json")
    *out = DuplicatesFormat::kJson;
  else
    return false;
  return true;
}

grpc::Status WriteDuplicates(v1::Updp::Stub* stub, const std::string& job_id,
                             const std::string& path, DuplicatesFormat format,
                             DuplicatesSummary* summary) {
  std::vector<v1::DuplicateItem> items;
  v1::GetDuplicatesResponse last;
  std::string token;
  do {
    grpc::ClientContext ctx;
    v1::GetDuplicatesRequest req;
    req.set_job_id(job_id);
    req.set_page_size(10000);
    req.set_page_token(token);
    last.Clear();
    if (auto s = stub->GetDuplicates(&ctx, req, &last); !s.ok()) return s;
    items.insert(items.end(), last.items().begin(), last.items().end());
    token = last.next_page_token();
  } while (!token.empty());
  std::ostringstream text;
  Render(text, format, job_id, last, items);
  if (auto s = WriteText(path, text.str(), "the groups"); !s.ok()) return s;
  summary->groups = last.total_groups();
  summary->items = static_cast<int64_t>(items.size());
  return grpc::Status::OK;
}

}  // namespace updp::client
