// dashboard_check DASHBOARD.json SCRAPE.txt: the Grafana dashboard parses, and every
// metric name its queries use is one that updp-server exported in SCRAPE.txt (a live
// /metrics scrape taken after the server ran jobs).
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>


int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::cerr << "usage: dashboard_check DASHBOARD.json [SCRAPE.txt]\n";
    return 2;
  }
  const bool check_names = argc == 3;
  std::ifstream f(argv[1]);
  nlohmann::json dash;
  try {
    dash = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    std::cerr << argv[1] << ": not valid JSON: " << e.what() << "\n";
    return 1;
  }
  std::set<std::string> exported;
  std::ifstream text(check_names ? argv[2] : "/dev/null");
  if (check_names && !text) {
    std::cerr << argv[2] << ": cannot read\n";
    return 1;
  }
  std::string line;
  while (std::getline(text, line)) {
    if (line.rfind("# TYPE ", 0) == 0) exported.insert(line.substr(7, line.find(' ', 7) - 7));
  }
  const std::regex name_re("\\b((?:updp|process)_[a-z_]+)\\b");
  int checked = 0, bad = 0;
  for (const auto& panel : dash.at("panels")) {
    for (const auto& t : panel.value("targets", nlohmann::json::array())) {
      const std::string expr = t.at("expr");
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), name_re); it != std::sregex_iterator(); ++it) {
        std::string n = (*it)[1];
        for (const char* suffix : {"_bucket", "_count", "_sum"}) {
          const std::string s(suffix);
          if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0 &&
              exported.count(n.substr(0, n.size() - s.size()))) {
            n = n.substr(0, n.size() - s.size());
          }
        }
        ++checked;
        if (check_names && !exported.count(n)) {
          std::cerr << "panel '" << panel.value("title", "") << "' uses " << n
                    << ", which updp-server does not export\n";
          ++bad;
        }
      }
    }
  }
  if (checked == 0) {
    std::cerr << "no metric names found in the dashboard\n";
    return 1;
  }
  std::cout << checked << " metric references checked, " << bad << " unknown\n";
  return bad == 0 ? 0 : 1;
}
