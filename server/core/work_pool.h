// A small server-owned thread pool with a bounded queue, for request work that may
// take longer than a gRPC reaction should (directory scans, imports, file reads):
// the handler schedules it and returns; the task finishes the reactor later.
#ifndef UPDP_SERVER_CORE_WORK_POOL_H_
#define UPDP_SERVER_CORE_WORK_POOL_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace updp::core {

class WorkPool {
 public:
  WorkPool(int threads, int max_queued);
  // Runs what is queued, then joins.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `fn`; false (nothing queued) when `max_queued` tasks already wait or the
  // pool is shutting down.
  bool TrySchedule(std::function<void()> fn);
  // Stops accepting, runs what is queued, joins. Idempotent.
  void Shutdown();

 private:
  void Loop();

  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_WORK_POOL_H_
