// A fixed set of worker threads for selection kernels. Every parallel loop of the
// selection code runs here, so one flag (--cpu_threads) bounds the CPU a selection
// uses; callers from several jobs may share one pool (their loops interleave).
#ifndef UPDP_SERVER_SELECT_THREAD_POOL_H_
#define UPDP_SERVER_SELECT_THREAD_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace updp::select {

class ThreadPool {
 public:
  // threads <= 0: one per hardware thread. The calling thread works too, so a pool
  // of n threads starts n - 1 workers.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }
  // Runs fn(i) for i in [0, n) on the pool and the caller; returns when all are done.
  // An exception thrown by fn is rethrown here (the first one; the rest still run).
  void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn);
  // Splits [0, n) into about threads() contiguous ranges: fn(begin, end).
  void ParallelRanges(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct Loop;
  void Work();
  static void Drain(Loop& loop);

  int threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Loop>> queue_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_THREAD_POOL_H_
