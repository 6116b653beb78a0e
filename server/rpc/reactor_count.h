// Counts the stream and register reactors that are not done yet, so that
// UpdpServer::Stop returns only after the last OnDone: their OnDone unsubscribes from
// the job manager, which the server's owner destroys right after Stop. gRPC's
// Server::Wait orders this as well, but through gRPC's own synchronization, which
// ThreadSanitizer cannot see and which gRPC does not document as a guarantee; this
// keeps the order explicit.
#ifndef UPDP_SERVER_RPC_REACTOR_COUNT_H_
#define UPDP_SERVER_RPC_REACTOR_COUNT_H_

#include <condition_variable>
#include <mutex>

namespace updp::rpc {

class ReactorCount {
 public:
  void Add() {
    std::lock_guard<std::mutex> l(mu_);
    ++live_;
  }
  // Last thing a reactor does, after deleting itself: the waiter may then go on to
  // destroy what the reactor used. Notifies under the lock, so that the waiter cannot
  // destroy this object while it is still notifying.
  void Done() {
    std::lock_guard<std::mutex> l(mu_);
    if (--live_ == 0) cv_.notify_all();
  }
  void WaitAllDone() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return live_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int live_ = 0;
};

}  // namespace updp::rpc

#endif  // UPDP_SERVER_RPC_REACTOR_COUNT_H_
