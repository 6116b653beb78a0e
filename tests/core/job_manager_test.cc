// JobManager driven by fake job bodies and notifications: every state change is a
// compare-and-set in the store, a cancelled job never runs, shutdown never leaves a
// worker without its store.
#include "server/core/job_manager.h"

#include <atomic>
#include <map>

#include "tests/core/core_test_util.h"

namespace updp::testing {
namespace {

using core::JobContext;
using core::JobInfo;
using core::JobManager;
using core::JobState;

core::JobParams Select(const std::string& strategy) {
  core::SelectParams p;
  p.strategy = strategy;
  p.budget = 1;
  return p;
}

// A fake SELECT body; each job's behaviour is chosen by its strategy name.
class FakeJobs {
 public:
  absl::Status Run(JobContext& ctx) {
    const std::string& what = std::get<core::SelectParams>(ctx.job().params).strategy;
    {
      std::lock_guard<std::mutex> l(mu_);
      runs_[ctx.job().id]++;
      starts_[what]++;
    }
    cv_.notify_all();
    if (what == "block") {
      // Runs until cancelled or stopped (a well-behaved job at its checkpoint).
      while (!ctx.Cancelled()) {
        core::Progress p;
        p.stage = "spin";
        ctx.SetProgress(p);
        std::this_thread::yield();
      }
      return core::JobStopped();
    }
    if (what == "stuck") {
      release_stuck_.Wait(600);  // ignores cancellation until the test releases it
      return core::JobStopped();
    }
    if (what == "finish") {
      release_stuck_.Wait(600);  // completes its work whatever was requested meanwhile
      return absl::OkStatus();
    }
    if (what == "fail-once") {
      std::lock_guard<std::mutex> l(mu_);
      if (runs_[ctx.job().id] == 1) return absl::InternalError("first run fails");
    }
    return absl::OkStatus();
  }
  int runs(const std::string& id) {
    std::lock_guard<std::mutex> l(mu_);
    return runs_[id];
  }
  // Waits until jobs of kind `what` have started `n` times in all.
  bool WaitStarts(const std::string& what, int n = 1) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(60), [&] { return starts_[what] >= n; });
  }
  Note& release_stuck() { return release_stuck_; }

 private:
  std::mutex mu_;
  std::map<std::string, int> runs_;
  std::condition_variable cv_;
  std::map<std::string, int> starts_;
  Note release_stuck_;
};

class JobManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = CoreTempDir("jm");
    auto s = core::Store::Open(dir_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    AddReadyDataset(*store_, "ds");
    manager_ = NewManager();
  }
  std::unique_ptr<JobManager> NewManager() {
    auto m = std::make_unique<JobManager>(store_.get(), nullptr, core::JobManagerOptions{});
    m->RegisterKind(core::JobKind::kSelect, core::Lane::kCpu,
                    [this](JobContext& ctx) { return fake_.Run(ctx); });
    return m;
  }
  // Waits (by watching, not polling) until job `id` is in a terminal state.
  JobInfo WaitFinal(JobManager& m, const std::string& id) {
    Note done;
    JobInfo last;
    std::mutex mu;
    auto token = m.Subscribe(id, [&](const JobInfo& j) {
      if (!core::IsTerminal(j.state)) return;
      std::lock_guard<std::mutex> l(mu);
      last = j;
      done.Notify();
    });
    EXPECT_TRUE(token.ok());
    EXPECT_TRUE(done.Wait()) << id << " never finished";
    m.Unsubscribe(*token);
    std::lock_guard<std::mutex> l(mu);
    return last;
  }
  JobState StoredState(const std::string& id) { return store_->GetJob(id)->state; }

  std::string dir_;
  std::unique_ptr<core::Store> store_;
  FakeJobs fake_;
  std::unique_ptr<JobManager> manager_;
};

TEST_F(JobManagerTest, SubmitBeforeStartRunsEachJobOnce) {
  auto a = manager_->Submit("ds", Select("quick"));
  auto b = manager_->Submit("ds", Select("quick"));
  ASSERT_TRUE(a.ok() && b.ok());
  manager_->Start();
  EXPECT_EQ(WaitFinal(*manager_, a->id).state, JobState::kSucceeded);
  EXPECT_EQ(WaitFinal(*manager_, b->id).state, JobState::kSucceeded);
  // A third job behind them proves the queue held nothing else.
  auto c = manager_->Submit("ds", Select("quick"));
  EXPECT_EQ(WaitFinal(*manager_, c->id).state, JobState::kSucceeded);
  EXPECT_EQ(fake_.runs(a->id), 1);
  EXPECT_EQ(fake_.runs(b->id), 1);
}

TEST_F(JobManagerTest, CancelBeforeStartNeverRuns) {
  auto a = manager_->Submit("ds", Select("quick"));
  ASSERT_TRUE(a.ok());
  auto c = manager_->Cancel(a->id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->state, JobState::kCancelled);
  manager_->Start();
  auto after = manager_->Submit("ds", Select("quick"));
  EXPECT_EQ(WaitFinal(*manager_, after->id).state, JobState::kSucceeded);
  EXPECT_EQ(fake_.runs(a->id), 0);
  EXPECT_EQ(StoredState(a->id), JobState::kCancelled);
}

TEST_F(JobManagerTest, CancelOfAQueuedJobBehindARunningOneNeverRunsIt) {
  manager_->Start();
  auto blocker = manager_->Submit("ds", Select("block"));  // occupies the one CPU worker
  ASSERT_TRUE(fake_.WaitStarts("block"));
  auto queued = manager_->Submit("ds", Select("quick"));
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(manager_->Cancel(queued->id)->state, JobState::kCancelled);
  EXPECT_EQ(manager_->Cancel(blocker->id)->state, JobState::kRunning);  // asked to stop
  EXPECT_EQ(WaitFinal(*manager_, blocker->id).state, JobState::kCancelled);
  auto after = manager_->Submit("ds", Select("quick"));
  EXPECT_EQ(WaitFinal(*manager_, after->id).state, JobState::kSucceeded);
  EXPECT_EQ(fake_.runs(queued->id), 0);
  EXPECT_EQ(StoredState(queued->id), JobState::kCancelled);
  // Cancel of a finished job returns it unchanged.
  EXPECT_EQ(manager_->Cancel(after->id)->state, JobState::kSucceeded);
}

TEST_F(JobManagerTest, TheStoreRefusesToRunACancelledJob) {
  // The compare-and-set behind dequeue: QUEUED -> RUNNING fails once the job was
  // cancelled, whatever the in-memory queue still holds.
  auto a = manager_->Submit("ds", Select("quick"));
  ASSERT_TRUE(manager_->Cancel(a->id).ok());
  JobInfo j = *store_->GetJob(a->id);
  auto s = store_->Transition(a->id, JobState::kQueued, JobState::kRunning, j);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("CANCELLED"), std::string::npos) << s;
  EXPECT_EQ(StoredState(a->id), JobState::kCancelled);
}

TEST_F(JobManagerTest, IllegalTransitionsAreRefused) {
  auto a = manager_->Submit("ds", Select("quick"));
  JobInfo j = *store_->GetJob(a->id);
  for (auto [from, to] :
       std::vector<std::pair<JobState, JobState>>{{JobState::kQueued, JobState::kSucceeded},
                                                  {JobState::kQueued, JobState::kInterrupted},
                                                  {JobState::kSucceeded, JobState::kQueued},
                                                  {JobState::kRunning, JobState::kQueued},
                                                  {JobState::kCancelled, JobState::kRunning}}) {
    auto s = store_->Transition(a->id, from, to, j);
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal)
        << core::JobStateName(from) << "->" << core::JobStateName(to);
    EXPECT_EQ(StoredState(a->id), JobState::kQueued);
  }
  // A legal transition from a state the job is not in changes nothing.
  auto s = store_->Transition(a->id, JobState::kRunning, JobState::kSucceeded, j);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StoredState(a->id), JobState::kQueued);
}

TEST_F(JobManagerTest, ResumeFromFailedAndCancelled) {
  manager_->Start();
  auto f = manager_->Submit("ds", Select("fail-once"));
  JobInfo failed = WaitFinal(*manager_, f->id);
  EXPECT_EQ(failed.state, JobState::kFailed);
  EXPECT_EQ(failed.error, "first run fails");
  ASSERT_TRUE(manager_->Resume(f->id).ok());
  EXPECT_EQ(WaitFinal(*manager_, f->id).state, JobState::kSucceeded);
  EXPECT_EQ(fake_.runs(f->id), 2);

  auto b = manager_->Submit("ds", Select("block"));
  ASSERT_TRUE(fake_.WaitStarts("block"));
  ASSERT_TRUE(manager_->Cancel(b->id).ok());
  EXPECT_EQ(WaitFinal(*manager_, b->id).state, JobState::kCancelled);
  // Resume of a job that is not resumable is refused.
  EXPECT_EQ(manager_->Resume(f->id).status().code(), absl::StatusCode::kFailedPrecondition);
  auto q = manager_->Resume("job-999");
  EXPECT_EQ(q.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(JobManagerTest, ShutdownInterruptsAndANewManagerResumes) {
  manager_->Start();
  auto b = manager_->Submit("ds", Select("block"));
  ASSERT_TRUE(fake_.WaitStarts("block"));
  EXPECT_TRUE(manager_->Shutdown(60000));
  EXPECT_EQ(StoredState(b->id), JobState::kInterrupted);
  EXPECT_EQ(manager_->Submit("ds", Select("quick")).status().code(),
            absl::StatusCode::kUnavailable);
  manager_ = NewManager();
  manager_->Start();
  // INTERRUPTED -> QUEUED -> RUNNING; the body sees the job again (run 2) and stops
  // on cancel.
  ASSERT_TRUE(manager_->Resume(b->id).ok());
  ASSERT_TRUE(fake_.WaitStarts("block", 2));
  EXPECT_EQ(fake_.runs(b->id), 2);
  auto c = manager_->Cancel(b->id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(WaitFinal(*manager_, b->id).state, JobState::kCancelled);
}

TEST_F(JobManagerTest, ShutdownWithAStuckWorkerKeepsItsStoreAlive) {
  manager_->Start();
  auto s = manager_->Submit("ds", Select("stuck"));
  ASSERT_TRUE(fake_.WaitStarts("stuck"));
  // The worker ignores the stop request: the grace runs out, Shutdown says so and
  // does not detach the worker.
  EXPECT_FALSE(manager_->Shutdown(50));
  EXPECT_EQ(StoredState(s->id), JobState::kRunning);
  fake_.release_stuck().Notify();
  // The destructor waits for the worker, which then stores its final state.
  manager_.reset();
  EXPECT_EQ(StoredState(s->id), JobState::kInterrupted);
}

TEST_F(JobManagerTest, WorkCompletedAfterACancelRequestIsKept) {
  manager_->Start();
  auto f = manager_->Submit("ds", Select("finish"));
  ASSERT_TRUE(fake_.WaitStarts("finish"));
  EXPECT_EQ(manager_->Cancel(f->id)->state, JobState::kRunning);
  fake_.release_stuck().Notify();
  // The body returned OK: its result exists, so the job SUCCEEDED (a CANCELLED job
  // whose output is already committed could never be resumed to completion).
  EXPECT_EQ(WaitFinal(*manager_, f->id).state, JobState::kSucceeded);
}

TEST_F(JobManagerTest, QueueCapacityIsEnforced) {
  core::JobManagerOptions o;
  o.queue_capacity = 2;
  JobManager m(store_.get(), nullptr, o);
  m.RegisterKind(core::JobKind::kSelect, core::Lane::kCpu,
                 [this](JobContext& ctx) { return fake_.Run(ctx); });
  m.Start();
  auto blocker = m.Submit("ds", Select("block"));
  ASSERT_TRUE(fake_.WaitStarts("block"));
  ASSERT_TRUE(m.Submit("ds", Select("quick")).ok());
  ASSERT_TRUE(m.Submit("ds", Select("quick")).ok());
  auto full = m.Submit("ds", Select("quick"));
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted) << full.status();
  EXPECT_EQ(m.Submit("nope", Select("quick")).status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(m.Cancel(blocker->id).ok());
  EXPECT_TRUE(m.Shutdown(60000));
}

TEST_F(JobManagerTest, TheIoLaneRunsWhileTheCpuLaneIsBusyAndNeedsOnlyItsOwnStart) {
  // REGISTER jobs (a fake body here) on the I/O lane, started alone first, as the
  // server does while its model loads.
  Note registered;
  manager_->RegisterKind(core::JobKind::kRegister, core::Lane::kIo, [&](JobContext&) {
    registered.Notify();
    return absl::OkStatus();
  });
  manager_->Start({core::Lane::kIo});
  auto held = manager_->Submit("ds", Select("block"));  // CPU lane: not started yet
  core::RegisterParams p;
  p.source_kind = core::SourceKind::kManifest;
  auto r1 = manager_->Submit("r1", p);
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(WaitFinal(*manager_, r1->id).state, JobState::kSucceeded);
  EXPECT_EQ(StoredState(held->id), JobState::kQueued);
  // Now the CPU lane holds a selection; a registration still runs at once.
  manager_->Start();
  ASSERT_TRUE(fake_.WaitStarts("block"));
  auto r2 = manager_->Submit("r2", p);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(WaitFinal(*manager_, r2->id).state, JobState::kSucceeded);
  EXPECT_EQ(StoredState(held->id), JobState::kRunning);
  ASSERT_TRUE(manager_->Cancel(held->id).ok());
  EXPECT_EQ(WaitFinal(*manager_, held->id).state, JobState::kCancelled);
}

TEST_F(JobManagerTest, AStoppedBodySaysWhatBecameOfItsWorkAndAFailureKeepsItsCode) {
  Note started;
  manager_->RegisterKind(core::JobKind::kRegister, core::Lane::kIo, [&](JobContext& ctx) {
    if (std::get<core::RegisterParams>(ctx.job().params).path == "bad") {
      return absl::InvalidArgumentError("manifest.path: no items");
    }
    started.Notify();
    while (!ctx.Cancelled()) std::this_thread::yield();
    return absl::CancelledError("the registration was rolled back");
  });
  manager_->Start();
  core::RegisterParams p;
  p.source_kind = core::SourceKind::kManifest;
  p.path = "bad";
  auto bad = manager_->Submit("r1", p);
  JobInfo failed = WaitFinal(*manager_, bad->id);
  EXPECT_EQ(failed.state, JobState::kFailed);
  EXPECT_EQ(failed.error_code, static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(store_->GetJob(bad->id)->error_code, failed.error_code);
  p.path = "slow";
  auto slow = manager_->Submit("r2", p);
  ASSERT_TRUE(started.Wait());
  ASSERT_TRUE(manager_->Cancel(slow->id).ok());
  JobInfo cancelled = WaitFinal(*manager_, slow->id);
  EXPECT_EQ(cancelled.state, JobState::kCancelled);
  EXPECT_EQ(cancelled.progress.message, "cancelled; the registration was rolled back");
}

TEST_F(JobManagerTest, WhenDoneCallsOnceWithTheFinalState) {
  manager_->Start();
  std::mutex mu;
  std::vector<JobState> seen;
  Note called;
  auto b = manager_->Submit("ds", Select("block"));
  ASSERT_TRUE(fake_.WaitStarts("block"));
  auto token = manager_->WhenDone(b->id, [&](const JobInfo& j) {
    std::lock_guard<std::mutex> l(mu);
    seen.push_back(j.state);
    called.Notify();
  });
  ASSERT_TRUE(token.ok());
  ASSERT_TRUE(manager_->Cancel(b->id).ok());
  ASSERT_TRUE(called.Wait());
  EXPECT_EQ(WaitFinal(*manager_, b->id).state, JobState::kCancelled);
  // On a job that already ended it answers at once.
  Note at_once;
  ASSERT_TRUE(manager_->WhenDone(b->id, [&](const JobInfo&) { at_once.Notify(); }).ok());
  EXPECT_TRUE(at_once.HasBeenNotified());
  ASSERT_TRUE(manager_->Resume(b->id).ok());
  ASSERT_TRUE(fake_.WaitStarts("block", 2));
  ASSERT_TRUE(manager_->Cancel(b->id).ok());
  EXPECT_EQ(WaitFinal(*manager_, b->id).state, JobState::kCancelled);
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(seen, std::vector<JobState>{JobState::kCancelled});  // once, not per change
}

TEST_F(JobManagerTest, JobsOfAnUnknownDatasetAreRefused) {
  EXPECT_EQ(manager_->Submit("nope", Select("quick")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace updp::testing
