#include "client/labeled_list.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace updp::client {

using nlohmann::json;

std::vector<std::string> SplitCsvLine(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else if (c != '\r') {
      out.back() += c;
    }
  }
  return out;
}

namespace {

absl::Status FromJson(const json& j, const std::string& path, LabeledList* out) {
  const auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("--labeled: ", path, ": ", why));
  };
  const json* list = &j;
  if (j.is_object()) {
    if (!j.contains("items") || !j["items"].is_array()) {
      return bad("a JSON object without an \"items\" list (not picks written by updpctl)");
    }
    list = &j["items"];
    out->format = "picks JSON";
  } else if (!j.is_array()) {
    return bad("JSON that is neither a list nor picks");
  } else {
    out->format = "JSON list";
  }
  for (const json& e : *list) {
    if (e.is_string()) {
      out->ids.push_back(e.get<std::string>());
    } else if (e.is_object() && e.contains("item_id") && e["item_id"].is_string()) {
      out->ids.push_back(e["item_id"].get<std::string>());
    } else if (e.is_object() && e.contains("data") && e["data"].is_object() &&
               e["data"].contains("item_id") && e["data"]["item_id"].is_string()) {
      out->ids.push_back(e["data"]["item_id"].get<std::string>());  // Label Studio tasks
      out->format = "Label Studio tasks";
    } else {
      return bad(
          absl::StrCat("entry ", e.dump().substr(0, 80), " has no item_id (nor data.item_id)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LabeledList> ReadLabeledList(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("--labeled: cannot read ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  LabeledList out;
  const absl::string_view head = absl::StripLeadingAsciiWhitespace(text);
  if (!head.empty() && (head.front() == '[' || head.front() == '{')) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      return absl::InvalidArgumentError(absl::StrCat("--labeled: ", path, ": not valid JSON"));
    }
    if (auto s = FromJson(j, path, &out); !s.ok()) return s;
    return out;
  }
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  int id_column = -1;
  if (!lines.empty()) {
    const auto header = SplitCsvLine(lines[0]);
    for (size_t i = 0; i < header.size(); ++i) {
      if (absl::StripAsciiWhitespace(header[i]) == "item_id") id_column = static_cast<int>(i);
    }
  }
  if (id_column >= 0) {
    out.format = "CSV (item_id column)";
    for (size_t n = 1; n < lines.size(); ++n) {
      if (absl::StripAsciiWhitespace(lines[n]).empty()) continue;
      const auto fields = SplitCsvLine(lines[n]);
      if (static_cast<int>(fields.size()) <= id_column) {
        return absl::InvalidArgumentError(
            absl::StrCat("--labeled: ", path, ":", n + 1, ": no item_id field"));
      }
      out.ids.push_back(fields[id_column]);
    }
    return out;
  }
  out.format = "text";
  for (const auto& line : lines) {
    std::string v(absl::StripAsciiWhitespace(line));
    if (v.empty()) continue;
    (v.front() == '/' ? out.paths : out.ids).push_back(std::move(v));
  }
  return out;
}

}  // namespace updp::client
