// The job system: a bounded queue, one device executor (owns the model: EMBED and
// LEARN_PROMPT run there one at a time) and a CPU pool (SELECT), cancellation that
// reaches a running loop through JobContext::Cancelled(), and progress fan-out to
// any number of watchers that never blocks the worker.
#ifndef UPDP_SERVER_CORE_JOB_MANAGER_H_
#define UPDP_SERVER_CORE_JOB_MANAGER_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/core/store.h"
#include "server/core/types.h"

namespace updp::core {

class Metrics;

// Why a running job is asked to stop.
enum class StopReason { kNone = 0, kCancel = 1, kShutdown = 2 };

// Handed to a running job. Cheap to poll.
class JobContext {
 public:
  virtual ~JobContext() = default;
  virtual const JobInfo& job() const = 0;
  // True once the job was cancelled or the server is shutting down: the job should
  // return at its next checkpoint (chunk/batch/epoch boundary).
  virtual bool Cancelled() const = 0;
  // Publishes progress; cheap and non-blocking (watchers see at most ~5 updates/s).
  virtual void SetProgress(const Progress& p) = 0;
  virtual void SetResult(const std::string& result_json) = 0;
};

// Runs one job kind. Returning OK means SUCCEEDED, unless the context was cancelled.
using JobFn = std::function<absl::Status(JobContext&)>;

enum class Lane { kDevice, kCpu };

struct JobManagerOptions {
  int queue_capacity = 64;
  int cpu_threads = 1;
  int64_t progress_interval_ms = 200;
};

class JobManager {
 public:
  using Watcher = std::function<void(const JobInfo&)>;

  JobManager(Store* store, Metrics* metrics, JobManagerOptions options);
  ~JobManager();

  using LaneFn = std::function<Lane(const JobInfo&)>;
  // Registers the function that runs jobs of `kind` and the lane it runs on.
  void RegisterKind(JobKind kind, Lane lane, JobFn fn);
  // As above, the lane chosen per job (e.g. SELECT with a prompt needs the device).
  void RegisterKind(JobKind kind, LaneFn lane, JobFn fn);
  // Starts the executors; re-queues jobs left QUEUED by a previous run.
  void Start();

  // Creates and queues a job. RESOURCE_EXHAUSTED when the queue is full,
  // UNAVAILABLE while draining.
  absl::StatusOr<JobInfo> Submit(JobKind kind, const std::string& dataset,
                                 const std::string& params_json);
  absl::StatusOr<JobInfo> Get(const std::string& id);
  absl::StatusOr<JobInfo> Cancel(const std::string& id);
  absl::StatusOr<JobInfo> Resume(const std::string& id);
  // True while a job of this dataset is queued or running.
  bool DatasetBusy(const std::string& dataset);
  int QueueDepth();

  // Subscribes to a job: `w` is called at once with the current state and then on
  // every published change, from the worker thread (it must not block). Returns a
  // token for Unsubscribe; after Unsubscribe returns, `w` is never called again.
  absl::StatusOr<int64_t> Subscribe(const std::string& id, Watcher w);
  void Unsubscribe(int64_t token);

  // Graceful stop: refuse new jobs, ask running jobs to stop at their next
  // checkpoint (they become INTERRUPTED), wait up to `grace_ms`. Returns false if
  // some job did not stop in time (its state stays RUNNING and becomes
  // INTERRUPTED on the next start).
  bool Shutdown(int64_t grace_ms);

 private:
  struct Running;
  class Context;
  struct LaneState {
    std::deque<std::string> queue;
    std::vector<std::thread> threads;
  };

  void Worker(Lane lane);
  void RunOne(const std::string& id);
  void Publish(const JobInfo& j);
  void UpdateStateMetrics();

  Store* store_;
  Metrics* metrics_;
  JobManagerOptions options_;
  std::map<JobKind, std::pair<LaneFn, JobFn>> kinds_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  bool stopping_ = false;
  bool started_ = false;
  std::map<Lane, LaneState> lanes_;
  std::map<std::string, std::shared_ptr<Running>> running_;

  std::mutex watch_mu_;
  int64_t next_token_ = 1;
  std::map<int64_t, std::pair<std::string, Watcher>> watchers_;
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_JOB_MANAGER_H_
