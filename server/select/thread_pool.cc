#include "server/select/thread_pool.h"

#include <atomic>
#include <exception>

namespace updp::select {

struct ThreadPool::Loop {
  int64_t n = 0;
  const std::function<void(int64_t)>* fn = nullptr;
  std::atomic<int64_t> next{0};
  std::mutex mu;
  std::condition_variable cv;
  int64_t finished = 0;  // under mu
  std::exception_ptr error;
};

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads_ = threads;
  for (int t = 1; t < threads_; ++t) workers_.emplace_back([this] { Work(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::Drain(Loop& loop) {
  int64_t done = 0;
  std::exception_ptr error;
  for (int64_t i; (i = loop.next.fetch_add(1)) < loop.n;) {
    try {
      (*loop.fn)(i);
    } catch (...) {
      if (!error) error = std::current_exception();
    }
    ++done;
  }
  if (done == 0 && !error) return;
  std::lock_guard<std::mutex> l(loop.mu);
  if (error && !loop.error) loop.error = error;
  loop.finished += done;
  if (loop.finished == loop.n) loop.cv.notify_all();
}

void ThreadPool::Work() {
  for (;;) {
    std::shared_ptr<Loop> loop;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      loop = queue_.front();
      // The loop stays queued while indices remain, so every idle worker joins it.
      if (loop->next.load() >= loop->n) {
        queue_.pop_front();
        continue;
      }
    }
    Drain(*loop);
    std::lock_guard<std::mutex> l(mu_);
    if (!queue_.empty() && queue_.front() == loop) queue_.pop_front();
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  auto loop = std::make_shared<Loop>();
  loop->n = n;
  loop->fn = &fn;
  if (n > 1 && threads_ > 1) {
    {
      std::lock_guard<std::mutex> l(mu_);
      queue_.push_back(loop);
    }
    cv_.notify_all();
  }
  Drain(*loop);
  std::unique_lock<std::mutex> l(loop->mu);
  loop->cv.wait(l, [&] { return loop->finished == loop->n; });
  if (loop->error) std::rethrow_exception(loop->error);
}

void ThreadPool::ParallelRanges(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t parts = std::min<int64_t>(n, threads_);
  ParallelFor(parts, [&](int64_t t) { fn(n * t / parts, n * (t + 1) / parts); });
}

}  // namespace updp::select
