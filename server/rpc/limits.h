// Request limits checked at the door (flags of updp-server, documented in
// docs/SECURITY.md): request size, labeled_ids count, page sizes, name lengths, string
// lengths and concurrent WatchJob streams. Exceeding one gives INVALID_ARGUMENT (an
// argument over its limit) or RESOURCE_EXHAUSTED (a shared resource), naming the limit's
// flag.
#ifndef UPDP_SERVER_RPC_LIMITS_H_
#define UPDP_SERVER_RPC_LIMITS_H_

#include <google/protobuf/message.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "absl/status/status.h"

namespace updp::rpc {

struct RequestLimits {
  // Largest message a client may send (gRPC refuses bigger ones with
  // RESOURCE_EXHAUSTED); 64 MiB holds the largest prompt artifact ImportPrompt takes.
  int64_t max_request_bytes = int64_t{64} << 20;
  int64_t max_labeled_ids = 1000000;  // SelectRequest.labeled_ids (at most 1,000,000)
  int64_t max_page_size = 10000;      // page_size and limit of listings
  int64_t max_name_length = 64;       // dataset and prompt names (at most 64: file names)
  int64_t max_string_bytes = 4096;    // any other string field (paths, ids, tokens)
  int64_t max_watchers_per_job = 1000;  // concurrent WatchJob streams of one job
  int64_t max_watchers = 10000;         // concurrent WatchJob streams in all
};

// INVALID_ARGUMENT naming the flag for a limit out of its range (each is >= 1; names
// at most 64; pages at most 10,000, the listings' own ceiling).
absl::Status ValidateLimits(const RequestLimits& l);

// Checks one request message (and the messages inside it) against the limits by
// field name: page_size/limit, labeled_ids, name/dataset/prompt/prompt_name, every
// other string. Bytes fields (artifacts) are bounded by max_request_bytes only.
absl::Status CheckRequest(const google::protobuf::Message& req, const RequestLimits& l);

// Counts open WatchJob streams, in all and per job.
class WatcherSlots {
 public:
  explicit WatcherSlots(const RequestLimits& l) : per_job_(l.max_watchers_per_job),
                                                  total_(l.max_watchers) {}
  // RESOURCE_EXHAUSTED naming the limit when a slot is not free.
  absl::Status Acquire(const std::string& job_id);
  void Release(const std::string& job_id);
  int64_t open() const;

 private:
  const int64_t per_job_, total_;
  mutable std::mutex mu_;
  int64_t open_ = 0;
  std::map<std::string, int64_t> by_job_;
};

}  // namespace updp::rpc

#endif  // UPDP_SERVER_RPC_LIMITS_H_
