// updp-bench-rpc-latency: what an operator sees while large manifests register.
//
//   updp-bench-rpc-latency --addr HOST:PORT --manifests A.csv,B.csv,C.csv
//       [--json_out FILE] [--deadline_ms 2000] [--job_id ID] [--idle_s 1]
//
// Starts one RegisterDataset (ManifestSource) per manifest, all at once, each on its own
// channel; meanwhile a probe thread on another channel calls GetJob, ListDatasets and
// grpc.health.v1.Health/Check back to back (each with a --deadline_ms deadline) and
// records every call's latency until the last registration returns. Before that it
// probes the idle server for --idle_s seconds. Prints a table and writes JSON: per
// method count, p50, p99, max (ms) and non-OK codes; per registration its wall time.
// GetJob asks for --job_id (a job that does not exist is fine: NOT_FOUND is the
// expected answer and the round trip is what counts).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/updp/v1/updp.grpc.pb.h"
#include "server/util/flags_help.h"

ABSL_FLAG(std::string, addr, "localhost:50051", "updp-server address");
ABSL_FLAG(std::vector<std::string>, manifests, {},
          "comma-separated server-side manifest files, one RegisterDataset each");
ABSL_FLAG(std::string, dataset_prefix, "",
          "dataset names are PREFIX0, PREFIX1, ...; default: lat-<unix time>-");
ABSL_FLAG(std::string, json_out, "", "write the results as JSON to this file");
ABSL_FLAG(int, deadline_ms, 2000, "deadline of each probe call");
ABSL_FLAG(std::string, job_id, "job-does-not-exist", "the job GetJob asks for");
ABSL_FLAG(double, idle_s, 1.0, "probe the idle server this long before registering");
ABSL_FLAG(int, register_timeout_s, 3600, "deadline of each RegisterDataset");
ABSL_FLAG(double, target_p99_ms, 50, "target p99 latency of the probed methods");
ABSL_FLAG(double, target_max_ms, 250, "target maximum latency of the probed methods");
ABSL_FLAG(bool, enforce_targets, false, "exit 1 when a probed method misses a target");

namespace {

using Clock = std::chrono::steady_clock;
using updp::v1::Updp;
namespace health = grpc::health::v1;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

const char* CodeName(grpc::StatusCode c) {
  // clang-format off
  static const char* const kNames[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
      "UNAUTHENTICATED"};
  // clang-format on
  const int i = static_cast<int>(c);
  return i >= 0 && i <= 16 ? kNames[i] : "UNKNOWN";
}

// A channel of its own: a distinct channel argument keeps gRPC from sharing the
// subchannel (and so the TCP connection) with the other channels.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& addr, const std::string& tag) {
  grpc::ChannelArguments args;
  args.SetString("updp.bench.channel", tag);
  return grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
}

struct Sample {
  double at_s;  // since the phase started
  double ms;
  grpc::StatusCode code;
};

struct Call {
  const char* method;
  Sample sample;
};

struct MethodStats {
  std::vector<Sample> samples;

  // Nearest-rank percentile of the latencies.
  double Percentile(double q) const {
    if (samples.empty()) return 0;
    std::vector<double> v;
    v.reserve(samples.size());
    for (const auto& s : samples) v.push_back(s.ms);
    std::sort(v.begin(), v.end());
    const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
    return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
  }
  const Sample* Max() const {
    const Sample* m = nullptr;
    for (const auto& s : samples) {
      if (!m || s.ms > m->ms) m = &s;
    }
    return m;
  }
  // Codes other than the expected ones (OK; NOT_FOUND for GetJob), with counts.
  std::map<std::string, int> Unexpected(bool not_found_ok) const {
    std::map<std::string, int> out;
    for (const auto& s : samples) {
      if (s.code == grpc::StatusCode::OK) continue;
      if (not_found_ok && s.code == grpc::StatusCode::NOT_FOUND) continue;
      ++out[CodeName(s.code)];
    }
    return out;
  }
};

const char* const kMethods[] = {"GetJob", "ListDatasets", "Health/Check"};

// Calls the three methods round robin until `stop`; one call in flight at a time.
class Prober {
 public:
  Prober(const std::string& addr, const std::string& job_id, int deadline_ms)
      : channel_(NewChannel(addr, "probe")),
        stub_(Updp::NewStub(channel_)),
        health_(health::Health::NewStub(channel_)),
        job_id_(job_id),
        deadline_(std::chrono::milliseconds(deadline_ms)) {}

  bool Connect(int seconds) {
    return channel_->WaitForConnected(std::chrono::system_clock::now() +
                                      std::chrono::seconds(seconds));
  }

  // Probes until `stop` is set (or `max_s` seconds have passed when > 0). Also returns
  // every call in the order made.
  std::map<std::string, MethodStats> Run(const std::atomic<bool>& stop, double max_s,
                                         std::vector<Call>* calls) {
    std::map<std::string, MethodStats> stats;
    const auto start = Clock::now();
    for (int i = 0; !stop.load(); i = (i + 1) % 3) {
      const auto t0 = Clock::now();
      if (max_s > 0 && Ms(t0 - start) >= max_s * 1000) break;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + deadline_);
      grpc::Status s;
      if (i == 0) {
        updp::v1::GetJobRequest req;
        req.set_job_id(job_id_);
        updp::v1::Job resp;
        s = stub_->GetJob(&ctx, req, &resp);
      } else if (i == 1) {
        updp::v1::ListDatasetsResponse resp;
        s = stub_->ListDatasets(&ctx, {}, &resp);
      } else {
        health::HealthCheckRequest req;
        req.set_service("updp.v1.Updp");
        health::HealthCheckResponse resp;
        s = health_->Check(&ctx, req, &resp);
      }
      const auto t1 = Clock::now();
      const Sample sample{Ms(t0 - start) / 1000, Ms(t1 - t0), s.error_code()};
      stats[kMethods[i]].samples.push_back(sample);
      calls->push_back({kMethods[i], sample});
    }
    return stats;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Updp::Stub> stub_;
  std::unique_ptr<health::Health::Stub> health_;
  std::string job_id_;
  std::chrono::milliseconds deadline_;
};

struct Registration {
  std::string name, manifest;
  double wall_s = 0;
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  std::string error;
  int64_t num_items = 0, num_failed = 0;
};

nlohmann::json PhaseJson(const std::map<std::string, MethodStats>& stats, double target_p99,
                         double target_max, bool* met) {
  nlohmann::json out = nlohmann::json::object();
  for (const char* m : kMethods) {
    auto it = stats.find(m);
    const MethodStats empty;
    const MethodStats& s = it == stats.end() ? empty : it->second;
    const Sample* mx = s.Max();
    const double p99 = s.Percentile(0.99), max = mx ? mx->ms : 0;
    const auto unexpected = s.Unexpected(std::string(m) == "GetJob");
    const bool ok =
        !s.samples.empty() && p99 < target_p99 && max < target_max && unexpected.empty();
    if (met) *met = *met && ok;
    out[m] = {{"count", s.samples.size()},
              {"p50_ms", s.Percentile(0.5)},
              {"p99_ms", p99},
              {"max_ms", max},
              {"max_at_s", mx ? mx->at_s : 0},
              {"unexpected_codes", unexpected},
              {"meets_targets", ok}};
  }
  return out;
}

// Runs of consecutive calls at or over `slow_ms`: while one lasts, an operator gets no
// prompt answer from any of the probed methods. Also lists the slow calls (at most 200).
nlohmann::json Stalls(const std::vector<Call>& calls, double slow_ms) {
  nlohmann::json windows = nlohmann::json::array(), slow = nlohmann::json::array();
  double longest = 0;
  int64_t n_slow = 0;
  for (size_t i = 0; i < calls.size();) {
    if (calls[i].sample.ms < slow_ms) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < calls.size() && calls[j].sample.ms >= slow_ms) {
      if (slow.size() < 200) {
        slow.push_back({{"method", calls[j].method},
                        {"at_s", calls[j].sample.at_s},
                        {"ms", calls[j].sample.ms},
                        {"code", CodeName(calls[j].sample.code)}});
      }
      ++n_slow;
      ++j;
    }
    const double from = calls[i].sample.at_s;
    const double to = calls[j - 1].sample.at_s + calls[j - 1].sample.ms / 1000;
    longest = std::max(longest, to - from);
    windows.push_back({{"from_s", from}, {"to_s", to}, {"calls", j - i}});
    i = j;
  }
  return {{"slow_ms", slow_ms},
          {"slow_calls_total", n_slow},
          {"longest_stall_s", longest},
          {"stall_windows", windows},
          {"slow_calls", slow}};
}

void PrintPhase(const std::string& title, const nlohmann::json& phase) {
  std::cout << title << "\n";
  std::cout << absl::StrFormat("  %-14s %8s %10s %10s %10s  %s\n", "method", "count", "p50 ms",
                               "p99 ms", "max ms", "non-OK (unexpected)");
  for (const char* m : kMethods) {
    const auto& r = phase.at(m);
    std::string codes;
    for (const auto& [code, n] : r.at("unexpected_codes").items()) {
      codes += absl::StrFormat("%s%s x%d", codes.empty() ? "" : ", ", code, n.get<int>());
    }
    std::cout << absl::StrFormat("  %-14s %8d %10.2f %10.2f %10.2f  %s\n", m,
                                 r.at("count").get<int64_t>(), r.at("p50_ms").get<double>(),
                                 r.at("p99_ms").get<double>(), r.at("max_ms").get<double>(),
                                 codes.empty() ? "-" : codes);
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "updp-bench-rpc-latency --addr HOST:PORT --manifests A.csv,B.csv,C.csv [--json_out F]");
  updp::ShowOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  const std::string addr = absl::GetFlag(FLAGS_addr);
  const auto manifests = absl::GetFlag(FLAGS_manifests);
  if (manifests.empty()) {
    std::cerr << "updp-bench-rpc-latency: --manifests is required\n";
    return 2;
  }
  std::string prefix = absl::GetFlag(FLAGS_dataset_prefix);
  if (prefix.empty()) {
    prefix = absl::StrFormat("lat-%d-", static_cast<long long>(std::time(nullptr)));
  }
  const double target_p99 = absl::GetFlag(FLAGS_target_p99_ms);
  const double target_max = absl::GetFlag(FLAGS_target_max_ms);

  Prober prober(addr, absl::GetFlag(FLAGS_job_id), absl::GetFlag(FLAGS_deadline_ms));
  if (!prober.Connect(10)) {
    std::cerr << "updp-bench-rpc-latency: cannot connect to " << addr << "\n";
    return 1;
  }

  // Idle baseline.
  std::atomic<bool> stop{false};
  std::vector<Call> idle_calls, load_calls;
  auto idle = prober.Run(stop, absl::GetFlag(FLAGS_idle_s), &idle_calls);

  // The registrations, each on its own channel, released together.
  std::vector<Registration> regs(manifests.size());
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (size_t i = 0; i < manifests.size(); ++i) {
    regs[i].name = prefix + std::to_string(i);
    regs[i].manifest = manifests[i];
    channels.push_back(NewChannel(addr, "register-" + std::to_string(i)));
    if (!channels.back()->WaitForConnected(std::chrono::system_clock::now() +
                                           std::chrono::seconds(10))) {
      std::cerr << "updp-bench-rpc-latency: cannot connect to " << addr << "\n";
      return 1;
    }
  }
  std::atomic<int> running{static_cast<int>(manifests.size())};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (size_t i = 0; i < manifests.size(); ++i) {
    threads.emplace_back([&, i] {
      auto stub = Updp::NewStub(channels[i]);
      while (!go.load()) std::this_thread::yield();
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(absl::GetFlag(FLAGS_register_timeout_s)));
      updp::v1::RegisterDatasetRequest req;
      req.set_name(regs[i].name);
      req.mutable_manifest()->set_path(regs[i].manifest);
      updp::v1::Dataset d;
      const auto t0 = Clock::now();
      grpc::Status s = stub->RegisterDataset(&ctx, req, &d);
      regs[i].wall_s = Ms(Clock::now() - t0) / 1000;
      regs[i].code = s.error_code();
      regs[i].error = s.error_message();
      regs[i].num_items = d.num_items();
      regs[i].num_failed = d.num_failed();
      if (--running == 0) stop.store(true);
    });
  }
  go.store(true);
  auto loaded = prober.Run(stop, 0, &load_calls);
  for (auto& t : threads) t.join();
  const double total_s = Ms(Clock::now() - start) / 1000;

  bool met = true;
  nlohmann::json idle_json = PhaseJson(idle, target_p99, target_max, nullptr);
  nlohmann::json load_json = PhaseJson(loaded, target_p99, target_max, &met);
  nlohmann::json regs_json = nlohmann::json::array();
  bool regs_ok = true;
  for (const auto& r : regs) {
    regs_ok = regs_ok && r.code == grpc::StatusCode::OK;
    regs_json.push_back({{"dataset", r.name},
                         {"manifest", r.manifest},
                         {"wall_s", r.wall_s},
                         {"code", CodeName(r.code)},
                         {"error", r.error},
                         {"num_items", r.num_items},
                         {"num_failed", r.num_failed}});
  }
  nlohmann::json out = {{"server", addr},
                        {"probe_deadline_ms", absl::GetFlag(FLAGS_deadline_ms)},
                        {"targets", {{"p99_ms", target_p99}, {"max_ms", target_max}}},
                        {"idle", idle_json},
                        {"during_registration", load_json},
                        {"stalls", Stalls(load_calls, target_max)},
                        {"registrations", regs_json},
                        {"registration_phase_s", total_s},
                        {"meets_targets", met}};

  PrintPhase(absl::StrFormat("idle server (%.1f s)", absl::GetFlag(FLAGS_idle_s)), idle_json);
  PrintPhase(absl::StrFormat("during %d concurrent RegisterDataset calls (%.1f s)",
                             static_cast<int>(regs.size()), total_s),
             load_json);
  const auto& stalls = out.at("stalls");
  std::cout << absl::StrFormat(
      "  %d calls took >= %.0f ms, in %d runs of consecutive slow calls; longest %.2f s\n",
      stalls.at("slow_calls_total").get<int64_t>(), target_max,
      static_cast<int>(stalls.at("stall_windows").size()),
      stalls.at("longest_stall_s").get<double>());
  for (const auto& w : stalls.at("stall_windows")) {
    std::cout << absl::StrFormat("    stall %6.2f s .. %6.2f s  (%d calls)\n",
                                 w.at("from_s").get<double>(), w.at("to_s").get<double>(),
                                 w.at("calls").get<int>());
  }
  std::cout << "registrations\n";
  for (const auto& r : regs_json) {
    std::cout << absl::StrFormat("  %-20s %9.2f s  %-10s items %d failed %d  %s\n",
                                 r.at("dataset").get<std::string>(), r.at("wall_s").get<double>(),
                                 r.at("code").get<std::string>(), r.at("num_items").get<int64_t>(),
                                 r.at("num_failed").get<int64_t>(),
                                 r.at("error").get<std::string>());
  }
  std::cout << absl::StrFormat("targets (p99 < %.0f ms, max < %.0f ms) %s\n", target_p99,
                               target_max, met ? "met" : "NOT met");
  if (const std::string path = absl::GetFlag(FLAGS_json_out); !path.empty()) {
    std::ofstream f(path);
    f << out.dump(2) << "\n";
    if (!f) {
      std::cerr << "updp-bench-rpc-latency: cannot write " << path << "\n";
      return 1;
    }
  }
  if (!regs_ok) return 1;
  return absl::GetFlag(FLAGS_enforce_targets) && !met ? 1 : 0;
}
