#include "client/report_html.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace updp::client {
namespace {

using nlohmann::json;

// Runs before anything else: every script error and failed resource load (a
// thumbnail that does not decode) is kept for the check at the end of the page.
constexpr char kHeadScript[] = R"(<script>
window.__reportErrors = [];
window.addEventListener('error', function (e) {
  var what = e.message ? e.message : ('failed to load ' + (e.target && e.target.tagName));
  window.__reportErrors.push(String(what));
}, true);
</script>
)";

constexpr char kCheckScript[] = R"(<script>
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.thumb');
  var ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
  }
  var b = document.body;
  b.setAttribute('data-thumbs-ok', String(ok));
  b.setAttribute('data-errors', String(window.__reportErrors.length));
  document.getElementById('page-errors').textContent = window.__reportErrors.join('\n');
  b.setAttribute('data-checked', '1');
});
// Hovering a cluster row highlights its points on the map.
document.querySelectorAll('tr[data-cluster]').forEach(function (row) {
  row.addEventListener('mouseenter', function () {
    document.querySelectorAll('#map circle[data-c="' + row.dataset.cluster + '"]')
        .forEach(function (c) { c.classList.add('hl'); });
  });
  row.addEventListener('mouseleave', function () {
    document.querySelectorAll('#map circle.hl').forEach(function (c) { c.classList.remove('hl'); });
  });
});
</script>
)";

constexpr char kStyle[] = R"(<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin: 0 0 8px; } h2 { font-size: 18px; margin: 20px 0 8px; }
h3 { font-size: 13px; margin: 0 0 6px; font-weight: 600; }
table { border-collapse: collapse; } td, th { padding: 1px 10px; text-align: left; }
table.meta th { font-weight: 600; color: #555; }
table.clusters td.n { text-align: right; font-variant-numeric: tabular-nums; }
table.clusters tr:hover { background: #eef; }
.cols { display: flex; flex-wrap: wrap; gap: 32px; align-items: flex-start; }
.col { flex: 1 1 420px; max-width: 640px; }
.scroll { max-height: 520px; overflow-y: auto; }
.bar { display: inline-block; height: 10px; background: #79c; vertical-align: middle; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 50%; }
.banner { background: #fff3cd; border: 1px solid #e0c36b; padding: 8px 12px; margin: 12px 0; }
pre { background: #f6f6f6; padding: 8px; white-space: pre-wrap; word-break: break-all; }
#map { border: 1px solid #ccc; background: #fff; max-width: 100%; height: auto; }
#map circle.hl { stroke: #000; stroke-width: 2; opacity: 1; }
.groups { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
section.cluster { border: 1px solid #ddd; border-top-width: 4px; padding: 6px; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; width: 112px; }
figure img, figure .ph { width: 112px; height: 112px; object-fit: contain; background: #eee;
  image-rendering: pixelated; display: block; }
figure .ph { display: flex; align-items: center; justify-content: center; color: #a33;
  font-size: 12px; text-align: center; }
figcaption { font-size: 11px; word-break: break-all; }
#page-errors:empty { display: none; }
</style>
)";

std::string Color(int64_t cluster) {
  const double hue = std::fmod(static_cast<double>(cluster < 0 ? 0 : cluster) * 137.508, 360.0);
  return absl::StrFormat("hsl(%.0f,65%%,45%%)", hue);
}

std::string Percent(double f) { return absl::StrFormat("%.1f%%", 100.0 * f); }

void Row(std::string* h, const std::string& key, const std::string& value) {
  absl::StrAppend(h, "<tr><th>", HtmlEscape(key), "</th><td>", HtmlEscape(value), "</td></tr>\n");
}

std::string JsonText(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return "";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

void Header(std::string* h, const ReportData& d, int64_t items_with_features) {
  const v1::SelectionReport& s = d.summary;
  const json params = json::parse(s.job().parameters_json(), nullptr, false);
  absl::StrAppend(h, "<h1>Selection report: ", HtmlEscape(s.dataset().name()), "</h1>\n",
                  "<table class=\"meta\">\n");
  Row(h, "dataset", s.dataset().name());
  std::string kind = v1::SourceKind_Name(s.dataset().source_kind());
  if (kind.rfind("SOURCE_KIND_", 0) == 0) kind = absl::AsciiStrToLower(kind.substr(12));
  Row(h, "source", absl::StrCat(kind, ": ", s.dataset().source_path()));
  Row(h, "items",
      absl::StrCat(s.dataset().num_items(), " (", items_with_features, " with features, ",
                   s.dataset().num_failed(), " failed)"));
  Row(h, "job", s.job().job_id());
  Row(h, "strategy", JsonText(params, "strategy"));
  Row(h, "budget", JsonText(params, "budget"));
  Row(h, "seed", JsonText(params, "seed"));
  Row(h, "features", JsonText(params, "features"));
  Row(h, "picks", absl::StrCat(s.total_picks()));
  absl::StrAppend(h, "</table>\n<details><summary>all job parameters</summary><pre>",
                  HtmlEscape(params.is_discarded() ? s.job().parameters_json() : params.dump(2)),
                  "</pre></details>\n");
  if (!s.job().result_json().empty()) {
    absl::StrAppend(h, "<details><summary>job result</summary><pre>",
                    HtmlEscape(s.job().result_json()), "</pre></details>\n");
  }
}

void ClusterTable(std::string* h, const ReportData& d, int64_t items_with_features) {
  std::vector<v1::ReportCluster> cs(d.summary.clusters().begin(), d.summary.clusters().end());
  std::stable_sort(cs.begin(), cs.end(), [](const auto& a, const auto& b) {
    return a.size() != b.size() ? a.size() > b.size() : a.cluster() < b.cluster();
  });
  int64_t largest = 1;
  for (const auto& c : cs) largest = std::max<int64_t>(largest, c.size());
  absl::StrAppend(h, "<div class=\"col\"><h2>Clusters (", cs.size(), ")</h2>\n",
                  "<p>Every item belongs to the cluster of its nearest pick (cosine similarity "
                  "on the selection's features); a pick keeps its strategy's cluster, a pick "
                  "without one is a cluster of its own. Share: of the ",
                  items_with_features, " items with features.</p>\n",
                  "<div class=\"scroll\"><table "
                  "class=\"clusters\"><tr><th>cluster</th><th>size</th><th>picks</th>"
                  "<th>share</th><th>items per pick</th><th></th></tr>\n");
  for (const auto& c : cs) {
    const double share =
        items_with_features > 0 ? static_cast<double>(c.size()) / items_with_features : 0;
    absl::StrAppend(
        h, "<tr data-cluster=\"", c.cluster(),
        "\"><td><span class=\"swatch\" style=\"background:", Color(c.cluster()),
        "\"></span> <a href=\"#cluster-", c.cluster(), "\">", c.cluster(),
        "</a></td><td class=\"n\">", c.size(), "</td><td class=\"n\">", c.picks(),
        "</td><td class=\"n\">", Percent(share), "</td><td class=\"n\">",
        absl::StrFormat("%.1f", c.picks() > 0 ? static_cast<double>(c.size()) / c.picks() : 0),
        "</td><td><span class=\"bar\" style=\"width:",
        absl::StrFormat("%.0f", 200.0 * c.size() / largest), "px\"></span></td></tr>\n");
  }
  absl::StrAppend(h, "</table></div></div>\n");
}

void Map(std::string* h, const ReportData& d,
         const std::map<int64_t, const v1::ReportPick*>& by_rank) {
  const v1::SelectionReport& s = d.summary;
  constexpr double kSize = 640, kPad = 16;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  bool first = true;
  for (const auto& p : s.points()) {
    if (!std::isfinite(p.x()) || !std::isfinite(p.y())) continue;
    if (first) {
      x0 = x1 = p.x();
      y0 = y1 = p.y();
      first = false;
    }
    x0 = std::min<double>(x0, p.x());
    x1 = std::max<double>(x1, p.x());
    y0 = std::min<double>(y0, p.y());
    y1 = std::max<double>(y1, p.y());
  }
  // One scale for both axes (distances stay true), the cloud centred.
  const double span = std::max({x1 - x0, y1 - y0, 1e-12});
  const double scale = (kSize - 2 * kPad) / span;
  const double cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  auto px = [&](double x) { return kSize / 2 + (x - cx) * scale; };
  auto py = [&](double y) { return kSize / 2 - (y - cy) * scale; };
  absl::StrAppend(h,
                  "<div class=\"col\"><h2>Map of the features</h2>\n<p>The first two "
                  "principal components of "
                  "the normalised features (fitted on ",
                  s.pca_sample_items(), " random items; they explain ", Percent(s.explained_x()),
                  " and ", Percent(s.explained_y()),
                  " of the variance). Large outlined dots are the picks, small dots ",
                  s.points_size() - static_cast<int64_t>(by_rank.size()),
                  " other items; colour: cluster. Hover for details.</p>\n",
                  absl::StrFormat("<svg id=\"map\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 "
                                  "%.0f %.0f\" role=\"img\">\n",
                                  kSize, kSize, kSize, kSize));
  // Other items first, so that the picks are drawn on top.
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& p : s.points()) {
      if (!std::isfinite(p.x()) || !std::isfinite(p.y())) continue;
      const bool pick = p.rank() > 0;
      if (pick != (pass == 1)) continue;
      std::string title;
      if (pick) {
        auto it = by_rank.find(p.rank());
        title = absl::StrCat("pick #", p.rank(), ": ",
                             it != by_rank.end() ? it->second->item().item_id() : "", " (cluster ",
                             p.cluster(), ")");
      } else {
        title = absl::StrCat("item ", p.item_index(), " (cluster ", p.cluster(), ")");
      }
      absl::StrAppend(
          h,
          absl::StrFormat(
              "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%s\" fill=\"%s\" data-c=\"%d\"%s>", px(p.x()),
              py(p.y()), pick ? "6" : "3", Color(p.cluster()), p.cluster(),
              pick ? " stroke=\"#000\" stroke-width=\"1.2\" class=\"pick\"" : " opacity=\"0.5\""),
          "<title>", HtmlEscape(title), "</title></circle>\n");
    }
  }
  absl::StrAppend(h, "</svg></div>\n");
}

void Thumbnails(std::string* h, const ReportData& d, const ThumbnailCounts& n) {
  const v1::SelectionReport& s = d.summary;
  absl::StrAppend(h, "<h2>Picks by cluster</h2>\n");
  if (!s.has_images()) {
    absl::StrAppend(h,
                    "<div class=\"banner\">This dataset was registered from embeddings: it "
                    "has no images, so the picks are listed without thumbnails.</div>\n");
  }
  absl::StrAppend(
      h, "<p>", n.made, " thumbnail(s); ", n.failed,
      " image(s) could not be read or decoded (placeholders)",
      n.omitted > 0 ? absl::StrCat("; ", n.omitted, " pick(s) without a thumbnail") : std::string(),
      ".</p>\n");
  std::map<int64_t, std::vector<const v1::ReportPick*>> groups;
  for (const auto& p : d.picks) groups[p.report_cluster()].push_back(&p);
  std::map<int64_t, int64_t> size_of;
  for (const auto& c : s.clusters()) size_of[c.cluster()] = c.size();
  std::vector<int64_t> order;
  for (const auto& [c, v] : groups) order.push_back(c);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return size_of[a] > size_of[b]; });
  absl::StrAppend(h, "<div class=\"groups\">\n");
  for (int64_t c : order) {
    const auto& picks = groups[c];
    absl::StrAppend(h, "<section class=\"cluster\" style=\"border-top-color:", Color(c),
                    "\" id=\"cluster-", c,
                    "\"><h3><span class=\"swatch\" "
                    "style=\"background:",
                    Color(c), "\"></span> Cluster ", c, ": ", size_of[c], " item(s), ",
                    picks.size(), " pick(s)</h3>\n<div class=\"grid\">\n");
    for (const v1::ReportPick* p : picks) {
      const v1::SelectedItem& it = p->item();
      const std::string caption = absl::StrCat("#", it.rank(), " ", it.item_id());
      const std::string title =
          absl::StrCat(caption, "\n", it.path(), "\nscore ", absl::StrFormat("%.4g", it.score()));
      absl::StrAppend(h, "<figure title=\"", HtmlEscape(title), "\">");
      if (!p->thumbnail_jpeg().empty()) {
        absl::StrAppend(h, "<img class=\"thumb\" alt=\"", HtmlEscape(it.item_id()),
                        "\" src=\"data:image/jpeg;base64,", absl::Base64Escape(p->thumbnail_jpeg()),
                        "\">");
      } else if (!p->thumbnail_error().empty()) {
        absl::StrAppend(h, "<div class=\"ph failed\" title=\"", HtmlEscape(p->thumbnail_error()),
                        "\">could not be decoded</div>");
      } else {
        absl::StrAppend(h, "<div class=\"ph\">no thumbnail</div>");
      }
      absl::StrAppend(h, "<figcaption>", HtmlEscape(caption), "<br>score ",
                      absl::StrFormat("%.4g", it.score()), "</figcaption></figure>\n");
    }
    absl::StrAppend(h, "</div></section>\n");
  }
  absl::StrAppend(h, "</div>\n");
  if (n.failed > 0) {
    absl::StrAppend(h, "<details><summary>", n.failed,
                    " image(s) that could not be decoded</summary><ul>\n");
    for (const auto& p : d.picks) {
      if (p.thumbnail_error().empty()) continue;
      absl::StrAppend(h, "<li>#", p.item().rank(), " ", HtmlEscape(p.item().item_id()), ": ",
                      HtmlEscape(p.thumbnail_error()), "</li>\n");
    }
    absl::StrAppend(h, "</ul></details>\n");
  }
}

}  // namespace

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

ThumbnailCounts CountThumbnails(const ReportData& d) {
  ThumbnailCounts n;
  for (const auto& p : d.picks) {
    if (!p.thumbnail_jpeg().empty()) {
      ++n.made;
    } else if (!p.thumbnail_error().empty()) {
      ++n.failed;
    } else {
      ++n.omitted;
    }
  }
  return n;
}

std::string ReportHtml(const ReportData& d) {
  const ThumbnailCounts n = CountThumbnails(d);
  int64_t items_with_features = 0;
  for (const auto& c : d.summary.clusters()) items_with_features += c.size();
  std::map<int64_t, const v1::ReportPick*> by_rank;
  for (const auto& p : d.picks) by_rank[p.item().rank()] = &p;
  std::string h;
  absl::StrAppend(&h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n",
                  "<title>updp selection report: ", HtmlEscape(d.summary.dataset().name()), " ",
                  HtmlEscape(d.summary.job().job_id()), "</title>\n", kHeadScript, kStyle,
                  "</head>\n<body data-thumbs-expected=\"", n.made, "\">\n",
                  "<pre id=\"page-errors\"></pre>\n");
  Header(&h, d, items_with_features);
  absl::StrAppend(&h, "<div class=\"cols\">\n");
  ClusterTable(&h, d, items_with_features);
  Map(&h, d, by_rank);
  absl::StrAppend(&h, "</div>\n");
  Thumbnails(&h, d, n);
  absl::StrAppend(&h, kCheckScript, "</body></html>\n");
  return h;
}

}  // namespace updp::client
