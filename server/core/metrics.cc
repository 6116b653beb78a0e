#include "server/core/metrics.h"

#include <dirent.h>
#include <httplib.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace updp::core {
namespace {

const prometheus::Histogram::BucketBoundaries kRpcBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const prometheus::Histogram::BucketBoundaries kJobBuckets = {
    0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 86400};

// Process metrics in the standard names (resident memory, CPU seconds, open fds),
// read from /proc at scrape time.
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    auto gauge = [&](const std::string& name, const std::string& help, double v,
                     prometheus::MetricType type) {
      prometheus::MetricFamily f;
      f.name = name;
      f.help = help;
      f.type = type;
      prometheus::ClientMetric m;
      if (type == prometheus::MetricType::Counter) {
        m.counter.value = v;
      } else {
        m.gauge.value = v;
      }
      f.metric.push_back(m);
      out.push_back(f);
    };
    std::ifstream statm("/proc/self/statm");
    long pages_total = 0, pages_resident = 0;
    statm >> pages_total >> pages_resident;
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    gauge("process_resident_memory_bytes", "Resident memory size in bytes.", pages_resident * page,
          prometheus::MetricType::Gauge);
    gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", pages_total * page,
          prometheus::MetricType::Gauge);
    std::ifstream stat("/proc/self/stat");
    std::string line;
    std::getline(stat, line);
    auto rp = line.rfind(')');
    if (rp != std::string::npos) {
      std::istringstream ss(line.substr(rp + 2));
      std::string tok;
      double utime = 0, stime = 0;
      for (int field = 3; ss >> tok; ++field) {
        if (field == 14) utime = std::stod(tok);
        if (field == 15) {
          stime = std::stod(tok);
          break;
        }
      }
      gauge("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
            (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK)),
            prometheus::MetricType::Counter);
    }
    int fds = 0;
    if (DIR* d = opendir("/proc/self/fd")) {
      while (readdir(d)) ++fds;
      closedir(d);
      fds -= 3;  // ., .. and the directory's own fd
    }
    gauge("process_open_fds", "Number of open file descriptors.", fds,
          prometheus::MetricType::Gauge);
    return out;
  }
};

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto& r = *registry_;
  rpc_total_ = &BuildCounter()
                    .Name("updp_grpc_requests_total")
                    .Help("gRPC requests handled, by method and status code.")
                    .Register(r);
  rpc_seconds_ = &BuildHistogram()
                      .Name("updp_grpc_request_duration_seconds")
                      .Help("gRPC request latency (streams: until the stream closes).")
                      .Register(r);
  jobs_gauge_ = &BuildGauge()
                     .Name("updp_jobs")
                     .Help("Jobs currently queued or running, by kind and state.")
                     .Register(r);
  jobs_finished_ = &BuildCounter()
                        .Name("updp_jobs_finished_total")
                        .Help("Jobs that reached a terminal state, by kind and outcome.")
                        .Register(r);
  job_seconds_ = &BuildHistogram()
                      .Name("updp_job_duration_seconds")
                      .Help("Wall time of finished job runs, by kind.")
                      .Register(r);
  select_seconds_ = &BuildHistogram()
                         .Name("updp_selection_duration_seconds")
                         .Help("Time of the selection algorithm, by strategy.")
                         .Register(r);
  model_info_ = &BuildGauge()
                     .Name("updp_model_info")
                     .Help("Loaded model (constant 1; labels describe it).")
                     .Register(r);
  queue_depth =
      &BuildGauge().Name("updp_queue_depth").Help("Jobs waiting in the queue.").Register(r).Add({});
  queue_rejections = &BuildCounter()
                          .Name("updp_queue_rejections_total")
                          .Help("Job submissions refused because the queue was full.")
                          .Register(r)
                          .Add({});
  images_decoded =
      &BuildCounter().Name("updp_images_decoded_total").Help("Images decoded.").Register(r).Add({});
  images_embedded = &BuildCounter()
                         .Name("updp_images_embedded_total")
                         .Help("Images embedded by BLIP-2.")
                         .Register(r)
                         .Add({});
  images_failed = &BuildCounter()
                       .Name("updp_images_failed_total")
                       .Help("Images skipped because they were missing, unreadable or corrupt.")
                       .Register(r)
                       .Add({});
  embedding_rate = &BuildGauge()
                        .Name("updp_embedding_rate_images_per_second")
                        .Help("Current embedding throughput of the running EMBED job.")
                        .Register(r)
                        .Add({});
  prompt_loss = &BuildGauge()
                     .Name("updp_prompt_learning_loss")
                     .Help("Last epoch's total loss of the running LEARN_PROMPT job.")
                     .Register(r)
                     .Add({});
  prompt_epoch = &BuildGauge()
                      .Name("updp_prompt_learning_epoch")
                      .Help("Epoch of the running LEARN_PROMPT job.")
                      .Register(r)
                      .Add({});
  model_loaded = &BuildGauge()
                      .Name("updp_model_loaded")
                      .Help("1 when the BLIP-2 model is loaded and serving.")
                      .Register(r)
                      .Add({});
  device_memory_allocated =
      &BuildGauge()
           .Name("updp_device_memory_allocated_bytes")
           .Help("Device memory held by tensors (CUDA caching allocator); 0 on CPU.")
           .Register(r)
           .Add({});
  device_memory_reserved =
      &BuildGauge()
           .Name("updp_device_memory_reserved_bytes")
           .Help("Device memory reserved by the CUDA caching allocator; 0 on CPU.")
           .Register(r)
           .Add({});
  device_memory_peak_allocated =
      &BuildGauge()
           .Name("updp_device_memory_peak_allocated_bytes")
           .Help("Highest device memory held by tensors since start; 0 on CPU.")
           .Register(r)
           .Add({});
  device_memory_peak_reserved = &BuildGauge()
                                     .Name("updp_device_memory_peak_reserved_bytes")
                                     .Help(
                                         "Highest device memory reserved by the CUDA caching "
                                         "allocator since start; 0 on CPU.")
                                     .Register(r)
                                     .Add({});
  BuildGauge()
      .Name("updp_build_info")
      .Help("Build information (constant 1).")
      .Register(r)
      .Add({{"version", "0.1.0"}, {"compiler", __VERSION__}})
      .Set(1);
  process_ = std::make_shared<ProcessCollector>();
}

Metrics::~Metrics() { StopExposer(); }

namespace {
// The /metrics endpoint's bounds: connections served at once, request body bytes.
constexpr int kMetricsHttpThreads = 32;
constexpr size_t kMetricsMaxPayload = 4096;
}  // namespace

bool Metrics::Expose(const std::string& host, int port) {
  http_ = std::make_unique<httplib::Server>();
  // Each connection holds a worker until it sends a request or times out. httplib's
  // defaults (8 workers on 2 cores, 5 s wait for an idle connection's first request)
  // let a dozen idle connections stall scrapes for seconds: more workers, and an idle
  // connection is dropped after 1 s (scrapers connect and ask at once).
  http_->new_task_queue = [] { return new httplib::ThreadPool(kMetricsHttpThreads); };
  http_->set_keep_alive_timeout(1);
  http_->set_keep_alive_max_count(100);
  http_->set_read_timeout(5, 0);
  http_->set_write_timeout(5, 0);
  http_->set_payload_max_length(kMetricsMaxPayload);
  // GET (and HEAD) only, answered before any body is read: a POST with a body that
  // never comes must not hold a worker.
  http_->set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "GET" || req.method == "HEAD")
      return httplib::Server::HandlerResponse::Unhandled;
    res.status = 405;
    res.set_header("Allow", "GET, HEAD");
    res.set_header("Connection", "close");
    res.set_content("method not allowed: GET /metrics\n", "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  });
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(Serialize(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("updp metrics: GET /metrics\n", "text/plain");
  });
  if (port == 0) {
    bound_port_ = http_->bind_to_any_port(host);
  } else {
    bound_port_ = http_->bind_to_port(host, port) ? port : -1;
  }
  if (bound_port_ <= 0) {
    http_.reset();
    return false;
  }
  http_thread_ = std::thread([this] { http_->listen_after_bind(); });
  return true;
}

void Metrics::StopExposer() {
  if (http_) http_->stop();
  if (http_thread_.joinable()) http_thread_.join();
  http_.reset();
}

void Metrics::SetDeviceRefresh(std::function<void(Metrics&)> fn) {
  std::lock_guard<std::mutex> l(refresh_mu_);
  refresh_device_ = std::move(fn);
}

std::string Metrics::Serialize() {
  {
    std::lock_guard<std::mutex> l(refresh_mu_);
    if (refresh_device_) refresh_device_(*this);
  }
  auto families = registry_->Collect();
  auto proc = process_->Collect();
  families.insert(families.end(), proc.begin(), proc.end());
  return prometheus::TextSerializer().Serialize(families);
}

void Metrics::RpcFinished(const std::string& method, const std::string& code, double seconds) {
  rpc_total_->Add({{"method", method}, {"code", code}}).Increment();
  rpc_seconds_->Add({{"method", method}}, kRpcBuckets).Observe(seconds);
}

void Metrics::JobFinished(const std::string& kind, const std::string& outcome, double seconds) {
  jobs_finished_->Add({{"kind", kind}, {"outcome", outcome}}).Increment();
  job_seconds_->Add({{"kind", kind}}, kJobBuckets).Observe(seconds);
}

void Metrics::SetJobsInState(const std::string& kind, const std::string& state, int n) {
  jobs_gauge_->Add({{"kind", kind}, {"state", state}}).Set(n);
}

void Metrics::SelectionFinished(const std::string& strategy, double seconds) {
  select_seconds_->Add({{"strategy", strategy}}, kJobBuckets).Observe(seconds);
}

void Metrics::SetModelInfo(const std::string& name, const std::string& checkpoint,
                           const std::string& device, const std::string& dtype) {
  model_info_
      ->Add({{"name", name}, {"checkpoint", checkpoint}, {"device", device}, {"dtype", dtype}})
      .Set(1);
}

}  // namespace updp::core
