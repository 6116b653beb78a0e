// Prometheus metrics (prometheus-cpp). Names follow the Prometheus conventions:
// updp_ prefix, base units, _total counters, _seconds histograms. Labels only take
// bounded values (method, code, kind, state, strategy): never job ids or paths.
#ifndef UPDP_SERVER_CORE_METRICS_H_
#define UPDP_SERVER_CORE_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace updp::core {

class Metrics {
 public:
  Metrics();
  ~Metrics();

  // Serves GET /metrics (text exposition of the prometheus-cpp registry) on
  // host:port from a background thread. Returns false when the port cannot be bound.
  // (Not prometheus-cpp's civetweb Exposer: civetweb starts its threads with a
  // 100 KB stack, which glibc refuses with EINVAL once LibTorch's static TLS is
  // loaded.) port 0 picks a free port; see bound_port().
  bool Expose(const std::string& host, int port);
  int bound_port() const { return bound_port_; }
  void StopExposer();
  std::shared_ptr<prometheus::Registry> registry() { return registry_; }
  // Text exposition of the current values (for tests and debugging).
  std::string Serialize();

  void RpcFinished(const std::string& method, const std::string& code, double seconds);
  void JobFinished(const std::string& kind, const std::string& outcome, double seconds);
  void SetJobsInState(const std::string& kind, const std::string& state, int n);
  void SelectionFinished(const std::string& strategy, double seconds);
  void SetModelInfo(const std::string& name, const std::string& checkpoint,
                    const std::string& device, const std::string& dtype);

  prometheus::Gauge* queue_depth;
  prometheus::Counter* queue_rejections;
  prometheus::Counter* images_decoded;
  prometheus::Counter* images_embedded;
  prometheus::Counter* images_failed;
  prometheus::Gauge* embedding_rate;
  prometheus::Gauge* prompt_loss;
  prometheus::Gauge* prompt_epoch;
  prometheus::Gauge* model_loaded;
  // CUDA caching-allocator bytes of the model's device (0 when the device is the CPU).
  prometheus::Gauge* device_memory_allocated;
  prometheus::Gauge* device_memory_reserved;
  // Peaks since the server started (the caching allocator's high-water marks).
  prometheus::Gauge* device_memory_peak_allocated;
  prometheus::Gauge* device_memory_peak_reserved;
  // Called at scrape time to refresh device gauges (set when the device is CUDA, once
  // the model is loaded, while /metrics may already be serving: hence the lock).
  void SetDeviceRefresh(std::function<void(Metrics&)> fn);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::mutex refresh_mu_;
  std::function<void(Metrics&)> refresh_device_;
  std::unique_ptr<httplib::Server> http_;
  std::thread http_thread_;
  int bound_port_ = 0;
  prometheus::Family<prometheus::Counter>* rpc_total_;
  prometheus::Family<prometheus::Histogram>* rpc_seconds_;
  prometheus::Family<prometheus::Gauge>* jobs_gauge_;
  prometheus::Family<prometheus::Counter>* jobs_finished_;
  prometheus::Family<prometheus::Histogram>* job_seconds_;
  prometheus::Family<prometheus::Histogram>* select_seconds_;
  prometheus::Family<prometheus::Gauge>* model_info_;
  std::shared_ptr<prometheus::Collectable> process_;
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_METRICS_H_
