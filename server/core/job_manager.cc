#include "server/core/job_manager.h"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/core/metrics.h"
#include "server/util/error_text.h"

namespace updp::core {

struct JobManager::Running {
  std::atomic<int> stop{0};  // StopReason
  std::mutex mu;
  JobInfo info;
  int64_t last_publish_ms = 0;
};

class JobManager::Context : public JobContext {
 public:
  Context(JobManager* m, std::shared_ptr<Running> r) : m_(m), r_(std::move(r)), job_(r_->info) {}
  const JobInfo& job() const override { return job_; }
  bool Cancelled() const override { return r_->stop.load() != 0; }
  void SetProgress(const Progress& p) override {
    JobInfo copy;
    bool publish;
    {
      std::lock_guard<std::mutex> l(r_->mu);
      r_->info.progress = p;
      const int64_t now = NowMs();
      publish = now - r_->last_publish_ms >= m_->options_.progress_interval_ms;
      if (publish) {
        r_->last_publish_ms = now;
        r_->info.version = m_->NextVersion();
      }
      copy = r_->info;
    }
    if (publish) {
      if (auto s = m_->store_->UpdateProgress(copy); !s.ok()) {
        std::cerr << "updp-server: " << copy.id << ": progress not stored: " << s << "\n";
      }
      m_->Publish(copy);
    }
    if (m_->progress_hook_) m_->progress_hook_(copy);
  }
  void SetResult(const std::string& result_json) override {
    std::lock_guard<std::mutex> l(r_->mu);
    r_->info.result_json = result_json;
  }

 private:
  JobManager* m_;
  std::shared_ptr<Running> r_;
  const JobInfo job_;
};

namespace {

// What a stopped job's message says became of its work: by default ResumeJob continues
// it; a body that cannot be resumed says why in its CANCELLED status.
std::string StopMessage(const char* what, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kCancelled && status.message() != JobStopped().message()) {
    return absl::StrCat(what, "; ", CleanErrorText(status.message()));
  }
  return absl::StrCat(what, "; ResumeJob continues from the last checkpoint");
}

}  // namespace

JobManager::JobManager(Store* store, Metrics* metrics, JobManagerOptions options)
    : store_(store), metrics_(metrics), options_(options) {}

JobManager::~JobManager() { Shutdown(-1); }

void JobManager::RegisterKind(JobKind kind, Lane lane, JobFn fn) {
  RegisterKind(
      kind, [lane](const JobInfo&) { return lane; }, std::move(fn));
}

void JobManager::RegisterKind(JobKind kind, LaneFn lane, JobFn fn) {
  kinds_[kind] = {std::move(lane), std::move(fn)};
}

Lane JobManager::LaneOf(const JobInfo& j) const { return kinds_.at(j.kind).first(j); }

size_t JobManager::DepthLocked() const {
  size_t n = 0;
  for (const auto& [lane, st] : lanes_) n += st.queue.size();
  return n;
}

void JobManager::Start(std::vector<Lane> lanes) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
    if (!started_) RebuildQueueLocked();
    for (Lane lane : lanes) {
      auto& threads = lanes_[lane].threads;
      if (!threads.empty()) continue;  // started by an earlier call
      const int n = lane == Lane::kDevice ? 1
                    : lane == Lane::kCpu  ? std::max(1, options_.cpu_jobs)
                                          : std::max(1, options_.register_jobs);
      for (int i = 0; i < n; ++i) threads.emplace_back([this, lane] { Worker(lane); });
    }
    if (metrics_) metrics_->queue_depth->Set(static_cast<double>(DepthLocked()));
  }
  cv_.notify_all();
  UpdateStateMetrics();
}

void JobManager::RebuildQueueLocked() {
  started_ = true;
  // Jobs one by one: a row that cannot be read is reported and skipped, it does not
  // strand the others.
  auto queued = store_->JobIdsInState(JobState::kQueued);
  if (!queued.ok()) {
    std::cerr << "updp-server: cannot list queued jobs: " << queued.status() << "\n";
    return;
  }
  for (const auto& id : *queued) {  // oldest first
    auto j = store_->GetJob(id);
    if (!j.ok()) {
      std::cerr << "updp-server: queued job " << id << " not started: " << j.status() << "\n";
    } else if (kinds_.count(j->kind)) {
      lanes_[LaneOf(*j)].queue.push_back(id);
    }
  }
}

int JobManager::QueueDepth() {
  std::lock_guard<std::mutex> l(mu_);
  return static_cast<int>(DepthLocked());
}

absl::StatusOr<JobInfo> JobManager::Submit(const std::string& dataset, const JobParams& params) {
  const JobKind kind = KindOf(params);
  if (!kinds_.count(kind)) {
    return absl::UnimplementedError(absl::StrCat(JobKindName(kind), " jobs are not available"));
  }
  absl::StatusOr<JobInfo> job;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return absl::UnavailableError("server is shutting down; not accepting jobs");
    if (static_cast<int>(DepthLocked()) >= options_.queue_capacity) {
      if (metrics_) metrics_->queue_rejections->Increment();
      return absl::ResourceExhaustedError(absl::StrCat(
          "job queue is full (", options_.queue_capacity, " queued jobs); retry later"));
    }
    job = store_->CreateJob(dataset, params);
    if (!job.ok()) return job.status();
    job->version = versions_[job->id] = NextVersion();
    // Before Start() the job is only in the store; Start() queues it from there.
    if (started_) lanes_[LaneOf(*job)].queue.push_back(job->id);
    if (metrics_) metrics_->queue_depth->Set(static_cast<double>(DepthLocked()));
  }
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

absl::StatusOr<JobInfo> JobManager::GetLocked(const std::string& id) {
  auto r = running_.find(id);
  if (r != running_.end()) {
    std::lock_guard<std::mutex> rl(r->second->mu);
    return r->second->info;
  }
  auto j = store_->GetJob(id);
  if (!j.ok()) return j.status();
  auto v = versions_.find(id);
  j->version = v == versions_.end() ? 0 : v->second;
  return j;
}

absl::StatusOr<JobInfo> JobManager::Cancel(const std::string& id) {
  JobInfo next;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto r = running_.find(id);
    if (r != running_.end()) {
      int expected = 0;
      r->second->stop.compare_exchange_strong(expected, static_cast<int>(StopReason::kCancel));
      std::lock_guard<std::mutex> rl(r->second->mu);
      return r->second->info;
    }
    auto job = store_->GetJob(id);
    if (!job.ok()) return job.status();
    if (job->state != JobState::kQueued) return job;  // finished: unchanged
    next = *job;
    next.state = JobState::kCancelled;
    next.finished_ms = NowMs();
    next.progress.message = "cancelled before it started";
    // Under mu_, no worker can dequeue this job between the read and the set.
    if (auto s = store_->Transition(id, JobState::kQueued, JobState::kCancelled, next); !s.ok()) {
      return s;
    }
    next.version = versions_[id] = NextVersion();
    for (auto& [lane, st] : lanes_) {
      st.queue.erase(std::remove(st.queue.begin(), st.queue.end(), id), st.queue.end());
    }
    if (metrics_) metrics_->queue_depth->Set(static_cast<double>(DepthLocked()));
  }
  if (metrics_) metrics_->JobFinished(JobKindName(next.kind), "cancelled", 0);
  UpdateStateMetrics();
  Publish(next);
  return next;
}

absl::StatusOr<JobInfo> JobManager::Resume(const std::string& id) {
  JobInfo next;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return absl::UnavailableError("server is shutting down; not accepting jobs");
    if (running_.count(id)) {
      return absl::FailedPreconditionError(absl::StrCat("job_id: '", id, "' is running"));
    }
    auto job = store_->GetJob(id);
    if (!job.ok()) return job.status();
    if (!IsLegalTransition(job->state, JobState::kQueued)) {
      return absl::FailedPreconditionError(
          absl::StrCat("job_id: '", id, "' is ", JobStateName(job->state),
                       "; only INTERRUPTED, CANCELLED or FAILED jobs can be resumed"));
    }
    if (!kinds_.count(job->kind)) {
      return absl::UnimplementedError(
          absl::StrCat(JobKindName(job->kind), " jobs are not available"));
    }
    if (static_cast<int>(DepthLocked()) >= options_.queue_capacity) {
      if (metrics_) metrics_->queue_rejections->Increment();
      return absl::ResourceExhaustedError(absl::StrCat(
          "job queue is full (", options_.queue_capacity, " queued jobs); retry later"));
    }
    next = *job;
    next.state = JobState::kQueued;
    next.error.clear();
    next.finished_ms = 0;
    next.progress.message = "resumed";
    if (auto s = store_->Transition(id, job->state, JobState::kQueued, next); !s.ok()) return s;
    next.version = versions_[id] = NextVersion();
    if (started_) lanes_[LaneOf(next)].queue.push_back(id);
    if (metrics_) metrics_->queue_depth->Set(static_cast<double>(DepthLocked()));
  }
  cv_.notify_all();
  UpdateStateMetrics();
  Publish(next);
  return next;
}

std::shared_ptr<JobManager::Running> JobManager::DequeueLocked(Lane lane) {
  const std::string id = lanes_[lane].queue.front();
  lanes_[lane].queue.pop_front();
  if (metrics_) metrics_->queue_depth->Set(static_cast<double>(DepthLocked()));
  auto job = store_->GetJob(id);
  if (job.ok() && job->state != JobState::kQueued) return nullptr;  // cancelled meanwhile
  absl::Status s = job.status();
  JobInfo next;
  if (job.ok()) {
    next = *job;
    next.state = JobState::kRunning;
    next.started_ms = NowMs();
    next.finished_ms = 0;
    next.error.clear();
    s = store_->Transition(id, JobState::kQueued, JobState::kRunning, next);
  }
  if (!s.ok()) {
    if (s.code() == absl::StatusCode::kNotFound ||
        s.code() == absl::StatusCode::kFailedPrecondition) {
      return nullptr;  // deleted, cancelled, or its dataset is being deleted
    }
    // A store error (disk full, I/O): the job stays QUEUED; retry it later rather than
    // strand it.
    std::cerr << "updp-server: " << id << " not started, will retry: " << s << "\n";
    lanes_[lane].queue.push_back(id);
    backoff_ = true;
    return nullptr;
  }
  next.version = versions_[id] = NextVersion();
  auto r = std::make_shared<Running>();
  r->info = std::move(next);
  running_[id] = r;
  return r;
}

void JobManager::Worker(Lane lane) {
  while (true) {
    std::shared_ptr<Running> r;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stopping_ || !lanes_[lane].queue.empty(); });
      if (stopping_) return;
      r = DequeueLocked(lane);
      if (!r && backoff_) {
        backoff_ = false;
        cv_.wait_for(l, std::chrono::seconds(1), [&] { return stopping_; });
      }
    }
    if (r) Run(std::move(r));
  }
}

void JobManager::Run(std::shared_ptr<Running> r) {
  UpdateStateMetrics();
  Publish(r->info);
  const std::string id = r->info.id;
  absl::Status status;
  {
    Context ctx(this, r);
    const JobFn& fn = kinds_.at(r->info.kind).second;
    try {
      status = fn(ctx);
    } catch (const std::exception& e) {
      status = absl::InternalError(absl::StrCat("job crashed: ", e.what()));
    }
  }
  JobInfo done;
  {
    std::lock_guard<std::mutex> l(r->mu);
    done = r->info;
  }
  const auto reason = static_cast<StopReason>(r->stop.load());
  const bool stopped = !status.ok() && reason != StopReason::kNone;
  if (status.ok()) {
    // Complete work is kept even when a stop came in after its last checkpoint.
    done.state = JobState::kSucceeded;
  } else if (stopped && reason == StopReason::kShutdown) {
    done.state = JobState::kInterrupted;
    done.progress.message = StopMessage("server stopped", status);
  } else if (stopped) {
    done.state = JobState::kCancelled;
    done.progress.message = StopMessage("cancelled", status);
  } else {
    done.state = JobState::kFailed;
    done.error = CleanErrorText(status.message());
    done.error_code = static_cast<int>(status.code());
  }
  done.finished_ms = NowMs();
  {
    std::lock_guard<std::mutex> l(mu_);
    absl::Status st;
    for (int attempt = 0; attempt < 5; ++attempt) {
      st = store_->Transition(id, JobState::kRunning, done.state, done);
      if (st.ok() || st.code() == absl::StatusCode::kFailedPrecondition) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));  // store error
    }
    if (!st.ok()) {
      // Left RUNNING in the store: it becomes INTERRUPTED at the next start.
      std::cerr << "updp-server: " << id << ": final state not stored: " << st << "\n";
    }
    done.version = versions_[id] = NextVersion();
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
  auto counts = store_->CountActiveJobs();
  if (!counts.ok()) return;
  for (JobKind k : {JobKind::kEmbed, JobKind::kLearnPrompt, JobKind::kSelect, JobKind::kRegister,
                    JobKind::kDuplicates, JobKind::kRefresh}) {
    for (JobState s : {JobState::kQueued, JobState::kRunning}) {
      int n = 0;
      for (const auto& [ck, cs, cn] : *counts) {
        if (ck == k && cs == s) n = cn;
      }
      metrics_->SetJobsInState(JobKindName(k), JobStateName(s), n);
    }
  }
}

absl::StatusOr<int64_t> JobManager::Subscribe(const std::string& id, Watcher w) {
  return AddWatcher(id, std::move(w), /*final_only=*/false);
}

absl::StatusOr<int64_t> JobManager::WhenDone(const std::string& id, Watcher w) {
  return AddWatcher(id, std::move(w), /*final_only=*/true);
}

absl::StatusOr<int64_t> JobManager::AddWatcher(const std::string& id, Watcher w, bool final_only) {
  std::lock_guard<std::mutex> l(watch_mu_);
  // The snapshot and its version are read together under mu_: every later change has a
  // higher version, and anything published late with a lower one is dropped.
  absl::StatusOr<JobInfo> now;
  {
    std::lock_guard<std::mutex> ml(mu_);
    now = GetLocked(id);
  }
  if (!now.ok()) return now.status();
  int64_t token = next_token_++;
  if (final_only && IsTerminal(now->state)) {
    w(*now);
    return token;
  }
  watchers_[token] = WatcherEntry{id, w, now->version, final_only};
  if (!final_only) w(*now);
  return token;
}

void JobManager::Unsubscribe(int64_t token) {
  std::lock_guard<std::mutex> l(watch_mu_);
  watchers_.erase(token);
}

void JobManager::Publish(const JobInfo& j) {
  std::lock_guard<std::mutex> l(watch_mu_);
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    WatcherEntry& w = it->second;
    if (w.job_id != j.id || j.version <= w.seen || (w.final_only && !IsTerminal(j.state))) {
      ++it;
      continue;
    }
    w.seen = j.version;
    w.fn(j);
    it = w.final_only ? watchers_.erase(it) : std::next(it);
  }
}

bool JobManager::Shutdown(int64_t grace_ms) {
  std::unique_lock<std::mutex> l(mu_);
  if (!stopping_) {
    stopping_ = true;
    for (auto& [id, r] : running_) {
      int expected = 0;
      r->stop.compare_exchange_strong(expected, static_cast<int>(StopReason::kShutdown));
    }
  }
  cv_.notify_all();
  auto idle = [&] { return running_.empty(); };
  if (grace_ms < 0) {
    idle_cv_.wait(l, idle);
  } else if (!idle_cv_.wait_for(l, std::chrono::milliseconds(grace_ms), idle)) {
    return false;  // workers keep running; never detached under a live store
  }
  std::vector<std::thread> threads;
  for (auto& [lane, st] : lanes_) {
    for (auto& t : st.threads) threads.push_back(std::move(t));
    st.threads.clear();
  }
  l.unlock();
  for (auto& t : threads) t.join();
  return true;
}

}  // namespace updp::core
