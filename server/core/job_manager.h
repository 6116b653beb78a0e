// The job system: a bounded queue, one device executor (owns the model: EMBED and
// LEARN_PROMPT run there one at a time), a CPU pool (SELECT) and a registration pool
// (REGISTER: file listing and store writes), cancellation that
// reaches a running loop through JobContext::Cancelled(), and progress fan-out to
// any number of watchers that never blocks the worker.
//
// Every state change is a Store::Transition (compare-and-set in SQLite). Dequeue
// (QUEUED -> RUNNING) and Cancel of a queued job (QUEUED -> CANCELLED) both happen
// under the manager's lock as compare-and-sets, so a cancelled job can never run.
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
  // The job as it was dequeued; job().params holds the typed parameters.
  virtual const JobInfo& job() const = 0;
  // True once the job was cancelled or the server is shutting down: the job should
  // return at its next checkpoint (chunk/batch/epoch boundary).
  virtual bool Cancelled() const = 0;
  // Publishes progress; cheap and non-blocking (watchers see at most ~5 updates/s).
  virtual void SetProgress(const Progress& p) = 0;
  virtual void SetResult(const std::string& result_json) = 0;
};

// Runs one job kind. OK means the work is complete (SUCCEEDED, even if a stop was
// requested meanwhile: the result is kept). A body that stops early at a checkpoint
// because JobContext::Cancelled() returns JobStopped(); the job then becomes CANCELLED
// or INTERRUPTED (by why it was asked to stop). Any other error means FAILED (the
// status code is kept with the error). A body whose stopped work cannot be resumed says
// what became of it in its own CANCELLED message instead of JobStopped()'s.
using JobFn = std::function<absl::Status(JobContext&)>;

inline absl::Status JobStopped() { return absl::CancelledError("stopped at a checkpoint"); }

// kIo runs registrations: they read directories and files and write the store, and
// must neither wait behind a long selection or embedding nor hold one up.
enum class Lane { kDevice, kCpu, kIo };

struct JobManagerOptions {
  int queue_capacity = 64;
  int cpu_jobs = 1;       // CPU-lane jobs (selections) running at once
  int register_jobs = 2;  // I/O-lane jobs (registrations) running at once
  int64_t progress_interval_ms = 200;
};

class JobManager {
 public:
  using Watcher = std::function<void(const JobInfo&)>;
  using LaneFn = std::function<Lane(const JobInfo&)>;

  JobManager(Store* store, Metrics* metrics, JobManagerOptions options);
  // Waits for running workers (see Shutdown).
  ~JobManager();

  // Registers the function that runs jobs of `kind` and the lane it runs on (chosen
  // per job from its typed parameters). Before Start().
  void RegisterKind(JobKind kind, Lane lane, JobFn fn);
  void RegisterKind(JobKind kind, LaneFn lane, JobFn fn);
  bool HasKind(JobKind kind) const { return kinds_.count(kind) > 0; }
  // Starts the executors of `lanes` (the others can be started by a later call). The
  // first call rebuilds the queue from the store's QUEUED jobs (oldest first), which
  // covers jobs left by a previous run and jobs submitted before it.
  void Start(std::vector<Lane> lanes = {Lane::kDevice, Lane::kCpu, Lane::kIo});

  // Creates and queues a job (see Store::CreateJob). RESOURCE_EXHAUSTED when the
  // queue is full, UNAVAILABLE while draining.
  absl::StatusOr<JobInfo> Submit(const std::string& dataset, const JobParams& params);
  // The live state of a running job, else the stored one.
  absl::StatusOr<JobInfo> Get(const std::string& id);
  // QUEUED -> CANCELLED at once; a RUNNING job is asked to stop (it becomes CANCELLED
  // at its next checkpoint). Finished jobs are returned unchanged.
  absl::StatusOr<JobInfo> Cancel(const std::string& id);
  // INTERRUPTED | CANCELLED | FAILED -> QUEUED.
  absl::StatusOr<JobInfo> Resume(const std::string& id);
  int QueueDepth();
  // True once Shutdown began.
  bool stopping() {
    std::lock_guard<std::mutex> l(mu_);
    return stopping_;
  }

  // Subscribes to a job: `w` is called at once with the current state and then on
  // every published change, from the worker thread (it must not block). Returns a
  // token for Unsubscribe; after Unsubscribe returns, `w` is never called again.
  absl::StatusOr<int64_t> Subscribe(const std::string& id, Watcher w);
  // Calls `w` once, with the job in its final state: at once on this thread when the
  // job has already ended, else from the worker after its final transition (it must
  // not block). Unsubscribe(token) cancels it.
  absl::StatusOr<int64_t> WhenDone(const std::string& id, Watcher w);
  void Unsubscribe(int64_t token);

  // Graceful stop: refuse new jobs, ask running jobs to stop at their next
  // checkpoint (they become INTERRUPTED), wait up to `grace_ms`. Returns false if
  // some job did not stop in time; its worker keeps running (the caller then exits
  // the process with _exit, and the job becomes INTERRUPTED at the next start). The
  // manager and the store must outlive such a worker, so the destructor waits.
  bool Shutdown(int64_t grace_ms);

  // Tests: called on the worker thread after every published progress update of a
  // running job (it may block the job there, deterministically).
  void SetProgressHookForTest(std::function<void(const JobInfo&)> hook) {
    progress_hook_ = std::move(hook);
  }

 private:
  struct Running;
  class Context;
  struct LaneState {
    std::deque<std::string> queue;
    std::vector<std::thread> threads;
  };

  void Worker(Lane lane);
  // Under mu_: queues the store's QUEUED jobs (once, at the first Start).
  void RebuildQueueLocked();
  // Under mu_: the job with the version of its last change (live if running).
  absl::StatusOr<JobInfo> GetLocked(const std::string& id);
  int64_t NextVersion() { return next_version_.fetch_add(1) + 1; }
  // Under mu_: pops a job of `lane` and moves it QUEUED -> RUNNING; null when the
  // popped job was cancelled or deleted meanwhile.
  std::shared_ptr<Running> DequeueLocked(Lane lane);
  void Run(std::shared_ptr<Running> r);
  Lane LaneOf(const JobInfo& j) const;
  void Publish(const JobInfo& j);
  void UpdateStateMetrics();
  size_t DepthLocked() const;

  Store* store_;
  Metrics* metrics_;
  JobManagerOptions options_;
  std::map<JobKind, std::pair<LaneFn, JobFn>> kinds_;
  std::function<void(const JobInfo&)> progress_hook_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  bool stopping_ = false;
  bool started_ = false;  // the queue was rebuilt from the store
  std::map<Lane, LaneState> lanes_;
  std::map<std::string, std::shared_ptr<Running>> running_;
  std::map<std::string, int64_t> versions_;  // last state change per job (under mu_)
  bool backoff_ = false;  // a dequeue hit a store error: workers wait before retrying
  std::atomic<int64_t> next_version_{0};

  struct WatcherEntry {
    std::string job_id;
    Watcher fn;
    int64_t seen = 0;         // highest version delivered
    bool final_only = false;  // WhenDone: only the final state, then removed
  };
  absl::StatusOr<int64_t> AddWatcher(const std::string& id, Watcher w, bool final_only);
  std::mutex watch_mu_;
  int64_t next_token_ = 1;
  std::map<int64_t, WatcherEntry> watchers_;
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_JOB_MANAGER_H_
