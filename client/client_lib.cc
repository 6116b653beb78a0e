#include "client/client_lib.h"

#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace updp::client {

std::string StateName(v1::JobState s) { return v1::JobState_Name(s); }
std::string KindName(v1::JobKind k) { return v1::JobKind_Name(k); }

bool IsTerminal(v1::JobState s) {
  return s == v1::SUCCEEDED || s == v1::FAILED || s == v1::CANCELLED || s == v1::INTERRUPTED;
}

std::string JobLine(const v1::Job& j) {
  std::string line = absl::StrFormat("%-10s %-12s %-11s %-16s", j.job_id(), KindName(j.kind()),
                                     StateName(j.state()), j.dataset());
  const auto& p = j.progress();
  if (!p.stage().empty()) absl::StrAppend(&line, " ", p.stage());
  if (p.total() > 0) absl::StrAppend(&line, " ", p.done(), "/", p.total());
  if (p.rate() > 0) absl::StrAppend(&line, absl::StrFormat(" %.1f/s", p.rate()));
  if (p.has_loss()) absl::StrAppend(&line, absl::StrFormat(" loss %.4f", p.loss()));
  if (!p.message().empty()) absl::StrAppend(&line, "  ", p.message());
  if (!j.error().empty()) absl::StrAppend(&line, "  error: ", j.error());
  return line;
}

std::string ProgressBar(const v1::Progress& p, int width) {
  if (p.total() <= 0) {  // a count whose total is not known yet (files found so far)
    std::string s = absl::StrFormat("[%s]       %lld", std::string(width, ' '),
                                    static_cast<long long>(p.done()));
    if (p.rate() > 0) absl::StrAppend(&s, absl::StrFormat("  %.1f/s", p.rate()));
    if (!p.stage().empty()) absl::StrAppend(&s, "  ", p.stage());
    return s;
  }
  const double f = std::clamp(static_cast<double>(p.done()) / p.total(), 0.0, 1.0);
  const int fill = static_cast<int>(std::lround(f * width));
  std::string bar = "[" + std::string(fill, '#') + std::string(width - fill, '-') + "]";
  std::string s =
      absl::StrFormat("%s %3d%%  %lld/%lld", bar, static_cast<int>(f * 100),
                      static_cast<long long>(p.done()), static_cast<long long>(p.total()));
  if (p.rate() > 0) {
    absl::StrAppend(&s, absl::StrFormat("  %.1f/s", p.rate()));
    const double left = (p.total() - p.done()) / p.rate();
    if (left >= 0 && std::isfinite(left)) {
      const int64_t secs = static_cast<int64_t>(left);
      absl::StrAppend(&s, absl::StrFormat("  ETA %d:%02d", secs / 60, secs % 60));
    }
  }
  if (p.has_loss()) absl::StrAppend(&s, absl::StrFormat("  loss %.4f", p.loss()));
  if (!p.stage().empty()) absl::StrAppend(&s, "  ", p.stage());
  return s;
}

grpc::Status Watch(v1::Updp::Stub* stub, const std::string& job_id, bool tty, std::ostream& out,
                   v1::Job* final_job) {
  grpc::ClientContext ctx;
  v1::WatchJobRequest req;
  req.set_job_id(job_id);
  auto reader = stub->WatchJob(&ctx, req);
  v1::JobEvent ev;
  while (reader->Read(&ev)) {
    *final_job = ev.job();
    if (tty) {
      out << "\r\033[K" << ev.job().job_id() << " " << StateName(ev.job().state()) << " "
          << ProgressBar(ev.job().progress(), 30) << std::flush;
    } else {
      out << JobLine(ev.job()) << "\n";
    }
  }
  if (tty) out << "\n";
  return reader->Finish();
}

bool ParseSelectionFormat(const std::string& name, SelectionFormat* out) {
  if (name == "csv") {
    *out = SelectionFormat::kCsv;
  } else if (name == "json") {
    *out = SelectionFormat::kJson;
  } else if (name == "paths") {
    *out = SelectionFormat::kPaths;
  } else if (name == "labelstudio") {
    *out = SelectionFormat::kLabelStudio;
  } else if (name == "cvat") {
    *out = SelectionFormat::kCvat;
  } else if (name == "fiftyone") {
    *out = SelectionFormat::kFiftyOne;
  } else {
    return false;
  }
  return true;
}

SelectionFormat SelectionFormatForPath(const std::string& path) {
  if (absl::EndsWith(path, ".json")) return SelectionFormat::kJson;
  if (absl::EndsWith(path, ".txt")) return SelectionFormat::kPaths;
  return SelectionFormat::kCsv;
}

grpc::Status MediaReference(const ExportOptions& o, const std::string& item_id,
                            const std::string& path, std::string* out) {
  if (path.empty()) {
    return grpc::Status(grpc::FAILED_PRECONDITION,
                        "item '" + item_id +
                            "' has no image path (an embeddings dataset); "
                            "export csv, json or paths instead");
  }
  std::string rel = path;
  if (!o.relative_to.empty()) {
    std::string root = o.relative_to;
    while (root.size() > 1 && root.back() == '/') root.pop_back();
    if (!absl::StartsWith(path, root + "/")) {
      return grpc::Status(grpc::INVALID_ARGUMENT, "--relative-to: the path of item '" + item_id +
                                                      "' (" + path + ") is not under " + root);
    }
    rel = path.substr(root.size() + 1);
  }
  const bool url = absl::StrContains(o.prefix, "://") || absl::StrContains(o.prefix, "?");
  if (url) {
    std::string enc;
    for (unsigned char c : rel) {
      if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
        enc += static_cast<char>(c);
      } else {
        enc += absl::StrFormat("%%%02X", c);
      }
    }
    rel = enc;
  }
  *out = o.prefix + rel;
  return grpc::Status::OK;
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

namespace {

grpc::Status WriteSelectionTo(std::ostream& f, SelectionFormat format, const ExportOptions& o,
                              const std::string& job_id, const v1::GetSelectionResponse& meta,
                              const std::vector<v1::SelectedItem>& items) {
  // The exports name images; every reference is made before anything is written.
  std::vector<std::string> refs;
  if (format == SelectionFormat::kLabelStudio || format == SelectionFormat::kCvat ||
      format == SelectionFormat::kFiftyOne) {
    for (const auto& it : items) {
      std::string ref;
      if (auto s = MediaReference(o, it.item_id(), it.path(), &ref); !s.ok()) return s;
      refs.push_back(std::move(ref));
    }
  }
  const auto replace = nlohmann::json::error_handler_t::replace;
  switch (format) {
    case SelectionFormat::kLabelStudio: {
      // A list of tasks: "data" carries what the labeling config reads ($image), "meta"
      // what the annotators may see about why the image was picked.
      nlohmann::json tasks = nlohmann::json::array();
      for (size_t i = 0; i < items.size(); ++i) {
        const auto& it = items[i];
        tasks.push_back({{"data", {{o.data_key, refs[i]}, {"item_id", it.item_id()}}},
                         {"meta",
                          {{"rank", it.rank()},
                           {"cluster", it.cluster()},
                           {"score", it.score()},
                           {"dataset", meta.dataset()},
                           {"strategy", meta.strategy()},
                           {"selection_job", job_id}}}});
      }
      f << tasks.dump(2, ' ', false, replace) << "\n";
      break;
    }
    case SelectionFormat::kCvat:
      for (const auto& r : refs) f << r << "\n";
      break;
    case SelectionFormat::kFiftyOne:
      f << "filepath,item_id,rank,cluster,score,tags\n";
      for (size_t i = 0; i < items.size(); ++i) {
        const auto& it = items[i];
        f << CsvField(refs[i]) << "," << CsvField(it.item_id()) << "," << it.rank() << ","
          << it.cluster() << "," << absl::StrFormat("%.6g", it.score()) << ","
          << CsvField("updp," + meta.strategy()) << "\n";
      }
      break;
    case SelectionFormat::kJson: {
      nlohmann::json j = {{"job_id", job_id},
                          {"dataset", meta.dataset()},
                          {"strategy", meta.strategy()},
                          {"items", nlohmann::json::array()}};
      for (const auto& it : items) {
        j["items"].push_back({{"rank", it.rank()},
                              {"item_id", it.item_id()},
                              {"path", it.path()},
                              {"cluster", it.cluster()},
                              {"score", it.score()}});
      }
      f << j.dump(2, ' ', false, replace) << "\n";
      break;
    }
    case SelectionFormat::kPaths:
      // Embeddings datasets have no paths: their ids stand in.
      for (const auto& it : items) f << (it.path().empty() ? it.item_id() : it.path()) << "\n";
      break;
    case SelectionFormat::kCsv: {
      f << "rank,item_id,path,cluster,score\n";
      for (const auto& it : items) {
        f << it.rank() << "," << CsvField(it.item_id()) << "," << CsvField(it.path()) << ","
          << it.cluster() << "," << absl::StrFormat("%.6g", it.score()) << "\n";
      }
      break;
    }
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status WriteText(const std::string& path, const std::string& text, const std::string& what) {
  if (path == "-") {
    std::cout << text;
    std::cout.flush();
    if (!std::cout) return grpc::Status(grpc::INTERNAL, "cannot write " + what + " to stdout");
    return grpc::Status::OK;
  }
  std::ofstream f(path);
  if (!f) return grpc::Status(grpc::INVALID_ARGUMENT, "--out: cannot write " + path);
  f << text;
  f.close();
  if (!f) return grpc::Status(grpc::INTERNAL, "--out: cannot write " + path);
  return grpc::Status::OK;
}

grpc::Status WriteSelection(v1::Updp::Stub* stub, const std::string& job_id,
                            const std::string& path, SelectionFormat format, int64_t* count) {
  return WriteSelection(stub, job_id, path, format, ExportOptions(), count);
}

grpc::Status WriteSelection(v1::Updp::Stub* stub, const std::string& job_id,
                            const std::string& path, SelectionFormat format,
                            const ExportOptions& options, int64_t* count) {
  std::vector<v1::SelectedItem> items;
  std::string token;
  v1::GetSelectionResponse last;
  do {
    grpc::ClientContext ctx;
    v1::GetSelectionRequest req;
    req.set_job_id(job_id);
    req.set_page_size(1000);
    req.set_page_token(token);
    last.Clear();
    grpc::Status s = stub->GetSelection(&ctx, req, &last);
    if (!s.ok()) return s;
    items.insert(items.end(), last.items().begin(), last.items().end());
    token = last.next_page_token();
  } while (!token.empty());
  // Rendered in memory first: a refused export (a path outside --relative-to) leaves
  // no partial file and writes nothing to stdout.
  std::ostringstream text;
  if (auto s = WriteSelectionTo(text, format, options, job_id, last, items); !s.ok()) return s;
  if (auto s = WriteText(path, text.str(), "the selection"); !s.ok()) return s;
  *count = static_cast<int64_t>(items.size());
  return grpc::Status::OK;
}

grpc::Status WriteSelection(v1::Updp::Stub* stub, const std::string& job_id,
                            const std::string& path, int64_t* count) {
  return WriteSelection(stub, job_id, path, SelectionFormatForPath(path), count);
}

}  // namespace updp::client
