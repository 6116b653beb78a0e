#include "server/core/job_manager.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "server/core/metrics.h"

namespace updp::core {

struct JobManager::Running {
  std::atomic<int> stop{0};  // StopReason
  std::mutex mu;
  JobInfo info;
  int64_t last_publish_ms = 0;
};

class JobManager::Context : public JobContext {
 public:
  Context(JobManager* m, std::shared_ptr<Running> r) : m_(m), r_(std::move(r)) {}
  const JobInfo& job() const override { return snapshot_; }
  bool Cancelled() const override { return r_->stop.load() != 0; }
  void SetProgress(const Progress& p) override {
    JobInfo copy;
    bool publish;
    {
      std::lock_guard<std::mutex> l(r_->mu);
      r_->info.progress = p;
      const int64_t now = NowMs();
      publish = now - r_->last_publish_ms >= m_->options_.progress_interval_ms;
      if (publish) r_->last_publish_ms = now;
      copy = r_->info;
    }
    if (publish) {
      m_->store_->UpdateJob(copy).IgnoreError();
      m_->Publish(copy);
    }
  }
  void SetResult(const std::string& result_json) override {
    std::lock_guard<std::mutex> l(r_->mu);
    r_->info.result_json = result_json;
  }
  JobInfo snapshot_;

 private:
  JobManager* m_;
  std::shared_ptr<Running> r_;
};

JobManager::JobManager(Store* store, Metrics* metrics, JobManagerOptions options)
    : store_(store), metrics_(metrics), options_(options) {}

JobManager::~JobManager() { Shutdown(0); }

void JobManager::RegisterKind(JobKind kind, Lane lane, JobFn fn) {
  RegisterKind(kind, [lane](const JobInfo&) { return lane; }, std::move(fn));
}

void JobManager::RegisterKind(JobKind kind, LaneFn lane, JobFn fn) {
  kinds_[kind] = {std::move(lane), std::move(fn)};
}

void JobManager::Start() {
  std::vector<JobInfo> queued = store_->ListJobs("", JobState::kQueued, 1 << 30);
  std::reverse(queued.begin(), queued.end());  // oldest first
  std::lock_guard<std::mutex> l(mu_);
  if (started_) return;
  started_ = true;
  for (const auto& j : queued) {
    auto it = kinds_.find(j.kind);
    if (it != kinds_.end()) lanes_[it->second.first(j)].queue.push_back(j.id);
  }
  lanes_[Lane::kDevice].threads.emplace_back([this] { Worker(Lane::kDevice); });
  for (int i = 0; i < std::max(1, options_.cpu_threads); ++i) {
    lanes_[Lane::kCpu].threads.emplace_back([this] { Worker(Lane::kCpu); });
  }
  if (metrics_) metrics_->queue_depth->Set(static_cast<double>(queued.size()));
}

int JobManager::QueueDepth() {
  std::lock_guard<std::mutex> l(mu_);
  size_t n = 0;
  for (auto& [lane, st] : lanes_) n += st.queue.size();
  return static_cast<int>(n);
}

absl::StatusOr<JobInfo> JobManager::Submit(JobKind kind, const std::string& dataset,
                                           const std::string& params_json) {
  auto it = kinds_.find(kind);
  if (it == kinds_.end()) {
    return absl::UnimplementedError(absl::StrCat(JobKindName(kind), " jobs are not available"));
  }
  std::unique_lock<std::mutex> l(mu_);
  if (stopping_) return absl::UnavailableError("server is shutting down; not accepting jobs");
  size_t depth = 0;
  for (auto& [lane, st] : lanes_) depth += st.queue.size();
  if (static_cast<int>(depth) >= options_.queue_capacity) {
    if (metrics_) metrics_->queue_rejections->Increment();
    return absl::ResourceExhaustedError(
        absl::StrCat("job queue is full (", options_.queue_capacity, " queued jobs); retry later"));
  }
  auto job = store_->CreateJob(kind, dataset, params_json);
  if (!job.ok()) return job.status();
  lanes_[it->second.first(*job)].queue.push_back(job->id);
  if (metrics_) metrics_->queue_depth->Set(static_cast<double>(depth + 1));
  l.unlock();
  cv_.notify_all();
  UpdateStateMetrics();
  Publish(*job);
  return job;
}

absl::StatusOr<JobInfo> JobManager::Get(const std::string& id) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto r = running_.find(id);
    if (r != running_.end()) {
      std::lock_guard<std::mutex> rl(r->second->mu);
      return r->second->info;
    }
  }
  return store_->GetJob(id);
}

absl::StatusOr<JobInfo> JobManager::Cancel(const std::string& id) {
  std::unique_lock<std::mutex> l(mu_);
  auto r = running_.find(id);
  if (r != running_.end()) {
    int expected = 0;
    r->second->stop.compare_exchange_strong(expected, static_cast<int>(StopReason::kCancel));
    std::lock_guard<std::mutex> rl(r->second->mu);
    return r->second->info;
  }
  auto job = store_->GetJob(id);
  if (!job.ok()) return job.status();
  if (job->state == JobState::kQueued) {
    for (auto& [lane, st] : lanes_) {
      st.queue.erase(std::remove(st.queue.begin(), st.queue.end(), id), st.queue.end());
    }
    job->state = JobState::kCancelled;
    job->finished_ms = NowMs();
    job->progress.message = "cancelled before it started";
    if (auto s = store_->UpdateJob(*job); !s.ok()) return s;
    l.unlock();
    if (metrics_) metrics_->JobFinished(JobKindName(job->kind), "cancelled", 0);
    UpdateStateMetrics();
    Publish(*job);
  }
  return job;
}

absl::StatusOr<JobInfo> JobManager::Resume(const std::string& id) {
  std::unique_lock<std::mutex> l(mu_);
  if (stopping_) return absl::UnavailableError("server is shutting down; not accepting jobs");
  if (running_.count(id)) {
    return absl::FailedPreconditionError(absl::StrCat("job_id: '", id, "' is running"));
  }
  auto job = store_->GetJob(id);
  if (!job.ok()) return job.status();
  if (job->state != JobState::kInterrupted && job->state != JobState::kCancelled &&
      job->state != JobState::kFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("job_id: '", id, "' is ", JobStateName(job->state),
                     "; only INTERRUPTED, CANCELLED or FAILED jobs can be resumed"));
  }
  auto kind = kinds_.find(job->kind);
  if (kind == kinds_.end()) {
    return absl::UnimplementedError(absl::StrCat(JobKindName(job->kind), " jobs are not available"));
  }
  job->state = JobState::kQueued;
  job->error.clear();
  job->finished_ms = 0;
  job->progress.message = "resumed";
  if (auto s = store_->UpdateJob(*job); !s.ok()) return s;
  lanes_[kind->second.first(*job)].queue.push_back(id);
  l.unlock();
  cv_.notify_all();
  UpdateStateMetrics();
  Publish(*job);
  return job;
}

bool JobManager::DatasetBusy(const std::string& dataset) {
  for (JobState s : {JobState::kQueued, JobState::kRunning}) {
    if (!store_->ListJobs(dataset, s, 1).empty()) return true;
  }
  return false;
}

void JobManager::Worker(Lane lane) {
  while (true) {
    std::string id;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stopping_ || !lanes_[lane].queue.empty(); });
      if (stopping_) return;
      id = lanes_[lane].queue.front();
      lanes_[lane].queue.pop_front();
      if (metrics_) {
        size_t depth = 0;
        for (auto& [ln, st] : lanes_) depth += st.queue.size();
        metrics_->queue_depth->Set(static_cast<double>(depth));
      }
    }
    RunOne(id);
  }
}

void JobManager::RunOne(const std::string& id) {
  auto job = store_->GetJob(id);
  if (!job.ok() || job->state != JobState::kQueued) return;
  auto r = std::make_shared<Running>();
  job->state = JobState::kRunning;
  job->started_ms = NowMs();
  job->error.clear();
  r->info = *job;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;  // stays QUEUED; picked up on the next start
    running_[id] = r;
  }
  store_->UpdateJob(*job).IgnoreError();
  UpdateStateMetrics();
  Publish(*job);

  Context ctx(this, r);
  ctx.snapshot_ = *job;
  const JobFn& fn = kinds_.at(job->kind).second;
  absl::Status status;
  try {
    status = fn(ctx);
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("job crashed: ", e.what()));
  }
  JobInfo done;
  {
    std::lock_guard<std::mutex> l(r->mu);
    done = r->info;
  }
  const auto reason = static_cast<StopReason>(r->stop.load());
  if (reason == StopReason::kShutdown) {
    done.state = JobState::kInterrupted;
    done.progress.message = "server stopped; ResumeJob continues from the last checkpoint";
  } else if (reason == StopReason::kCancel) {
    done.state = JobState::kCancelled;
    done.progress.message = "cancelled; ResumeJob continues from the last checkpoint";
  } else if (status.ok()) {
    done.state = JobState::kSucceeded;
  } else {
    done.state = JobState::kFailed;
    done.error = std::string(status.message());
  }
  done.finished_ms = NowMs();
  store_->UpdateJob(done).IgnoreError();
  {
    std::lock_guard<std::mutex> l(mu_);
    running_.erase(id);
  }
  idle_cv_.notify_all();
  if (metrics_) {
    const char* outcome = done.state == JobState::kSucceeded   ? "succeeded"
                          : done.state == JobState::kFailed    ? "failed"
                          : done.state == JobState::kCancelled ? "cancelled"
                                                               : "interrupted";
    metrics_->JobFinished(JobKindName(done.kind), outcome,
                          (done.finished_ms - done.started_ms) / 1000.0);
  }
  UpdateStateMetrics();
  Publish(done);
}

void JobManager::UpdateStateMetrics() {
  if (!metrics_) return;
  std::map<std::pair<JobKind, JobState>, int> counts;
  for (JobState s : {JobState::kQueued, JobState::kRunning}) {
    for (const auto& j : store_->ListJobs("", s, 1 << 20)) counts[{j.kind, s}]++;
  }
  for (JobKind k : {JobKind::kEmbed, JobKind::kLearnPrompt, JobKind::kSelect}) {
    for (JobState s : {JobState::kQueued, JobState::kRunning}) {
      metrics_->SetJobsInState(JobKindName(k), JobStateName(s), counts[{k, s}]);
    }
  }
}

absl::StatusOr<int64_t> JobManager::Subscribe(const std::string& id, Watcher w) {
  auto job = Get(id);
  if (!job.ok()) return job.status();
  std::lock_guard<std::mutex> l(watch_mu_);
  // Re-read under the watch lock so no publish can slip between read and register.
  auto now = Get(id);
  if (!now.ok()) return now.status();
  int64_t token = next_token_++;
  watchers_[token] = {id, w};
  w(*now);
  return token;
}

void JobManager::Unsubscribe(int64_t token) {
  std::lock_guard<std::mutex> l(watch_mu_);
  watchers_.erase(token);
}

void JobManager::Publish(const JobInfo& j) {
  std::lock_guard<std::mutex> l(watch_mu_);
  for (auto& [token, w] : watchers_) {
    if (w.first == j.id) w.second(j);
  }
}

bool JobManager::Shutdown(int64_t grace_ms) {
  std::unique_lock<std::mutex> l(mu_);
  if (!started_) {
    stopping_ = true;
    return true;
  }
  if (!stopping_) {
    stopping_ = true;
    for (auto& [id, r] : running_) {
      int expected = 0;
      r->stop.compare_exchange_strong(expected, static_cast<int>(StopReason::kShutdown));
    }
  }
  cv_.notify_all();
  bool stopped = idle_cv_.wait_for(l, std::chrono::milliseconds(grace_ms),
                                   [&] { return running_.empty(); });
  std::vector<std::thread> threads;
  for (auto& [lane, st] : lanes_) {
    for (auto& t : st.threads) threads.push_back(std::move(t));
    st.threads.clear();
  }
  l.unlock();
  for (auto& t : threads) {
    if (stopped) {
      t.join();
    } else {
      t.detach();  // forced: the process is about to exit
    }
  }
  return stopped;
}

}  // namespace updp::core
