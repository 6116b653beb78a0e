// The report page: structure, self-containedness and escaping of every server string.
#include "client/report_html.h"

#include <gtest/gtest.h>

#include <regex>

namespace updp::client {
namespace {

int Count(const std::string& h, const std::string& what) {
  int n = 0;
  for (size_t at = h.find(what); at != std::string::npos; at = h.find(what, at + 1)) ++n;
  return n;
}

ReportData Sample() {
  ReportData d;
  v1::SelectionReport& s = d.summary;
  s.mutable_dataset()->set_name("shoes&<bags>");
  s.mutable_dataset()->set_num_items(6);
  s.mutable_job()->set_job_id("job-1");
  s.mutable_job()->set_parameters_json(R"({"strategy":"kmeans","budget":3,"seed":7})");
  s.set_has_images(true);
  s.set_total_picks(3);
  auto add_cluster = [&](int64_t id, int64_t size, int64_t picks) {
    auto* c = s.add_clusters();
    c->set_cluster(id);
    c->set_size(size);
    c->set_picks(picks);
  };
  add_cluster(0, 2, 1);
  add_cluster(1, 4, 2);
  const char* ids[] = {"<script>alert(\"x\")</script>", "a'b\"c", "plain"};
  for (int i = 0; i < 3; ++i) {
    v1::ReportPick p;
    p.mutable_item()->set_rank(i + 1);
    p.mutable_item()->set_item_id(ids[i]);
    p.mutable_item()->set_path(std::string("/img/") + ids[i]);
    p.set_report_cluster(i == 0 ? 0 : 1);
    if (i == 2) {
      p.set_thumbnail_error("/img/plain: <not a JPEG>");
    } else {
      p.set_thumbnail_jpeg(std::string("\xff\xd8\xff\xe0 fake", 8));
    }
    d.picks.push_back(p);
    auto* pt = s.add_points();
    pt->set_x(static_cast<float>(i));
    pt->set_y(static_cast<float>(-i));
    pt->set_rank(i + 1);
    pt->set_cluster(p.report_cluster());
  }
  auto* other = s.add_points();
  other->set_x(0.5f);
  other->set_item_index(4);
  other->set_cluster(1);
  return d;
}

TEST(ReportHtmlTest, EscapesEveryServerString) {
  EXPECT_EQ(HtmlEscape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
  const std::string h = ReportHtml(Sample());
  EXPECT_EQ(h.find("<script>alert"), std::string::npos);
  EXPECT_NE(h.find("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"), std::string::npos);
  EXPECT_EQ(h.find("shoes&<bags>"), std::string::npos);
  EXPECT_NE(h.find("shoes&amp;&lt;bags&gt;"), std::string::npos);
  EXPECT_NE(h.find("a&#39;b&quot;c"), std::string::npos);
  EXPECT_EQ(h.find("<not a JPEG>"), std::string::npos);
  // Only the page's own two scripts.
  EXPECT_EQ(Count(h, "<script>"), 2);
}

TEST(ReportHtmlTest, SelfContainedWithThumbnailsPlaceholdersClustersAndMap) {
  const ReportData d = Sample();
  const std::string h = ReportHtml(d);
  EXPECT_EQ(h.find("http://"), std::string::npos);
  EXPECT_EQ(h.find("https://"), std::string::npos);
  EXPECT_EQ(h.find(" src=\"/"), std::string::npos);
  EXPECT_EQ(Count(h, "<img class=\"thumb\""), 2);
  EXPECT_EQ(Count(h, "src=\"data:image/jpeg;base64,"), 2);
  EXPECT_NE(h.find("data-thumbs-expected=\"2\""), std::string::npos);
  EXPECT_EQ(Count(h, "class=\"ph failed\""), 1);
  EXPECT_EQ(CountThumbnails(d).made, 2);
  EXPECT_EQ(CountThumbnails(d).failed, 1);
  // Cluster table rows and sections, the larger cluster first.
  EXPECT_EQ(Count(h, "<tr data-cluster="), 2);
  EXPECT_LT(h.find("<tr data-cluster=\"1\""), h.find("<tr data-cluster=\"0\""));
  ASSERT_NE(h.find("id=\"cluster-0\""), std::string::npos);
  EXPECT_LT(h.find("id=\"cluster-1\""), h.find("id=\"cluster-0\""));
  // The map: one circle per point, the three picks outlined.
  EXPECT_EQ(Count(h, "<circle "), 4);
  EXPECT_EQ(Count(h, "class=\"pick\""), 3);
  // Balanced blocks (the layout depends on it).
  EXPECT_EQ(Count(h, "<div"), Count(h, "</div>"));
  EXPECT_EQ(Count(h, "<section"), Count(h, "</section>"));
  EXPECT_EQ(Count(h, "<table"), Count(h, "</table>"));
  // The parameters.
  EXPECT_NE(h.find("kmeans"), std::string::npos);
  EXPECT_NE(h.find("<td>job-1</td>"), std::string::npos);
  EXPECT_EQ(h.find("no images"), std::string::npos);
}

TEST(ReportHtmlTest, EmbeddingsDatasetsSayWhyThereAreNoThumbnails) {
  ReportData d = Sample();
  d.summary.set_has_images(false);
  for (auto& p : d.picks) {
    p.clear_thumbnail_jpeg();
    p.clear_thumbnail_error();
  }
  const std::string h = ReportHtml(d);
  EXPECT_NE(h.find("registered from embeddings"), std::string::npos);
  EXPECT_EQ(Count(h, "<img"), 0);
  EXPECT_NE(h.find("data-thumbs-expected=\"0\""), std::string::npos);
}

}  // namespace
}  // namespace updp::client
