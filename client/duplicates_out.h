// Writing a DUPLICATES job's groups (updpctl dataset duplicates): a readable listing,
// CSV or JSON.
#ifndef UPDP_CLIENT_DUPLICATES_OUT_H_
#define UPDP_CLIENT_DUPLICATES_OUT_H_

#include <grpcpp/grpcpp.h>

#include <string>

#include "proto/updp/v1/updp.grpc.pb.h"

namespace updp::client {

// text: one block per group, the representative marked '*';
// csv: group,representative,item_id,path,similarity;
// json: {"job_id", "dataset", "threshold", "groups": [{"group", "items": [...]}]}.
enum class DuplicatesFormat { kText, kCsv, kJson };
bool ParseDuplicatesFormat(const std::string& name, DuplicatesFormat* out);

struct DuplicatesSummary {
  int64_t groups = 0;
  int64_t items = 0;
};

// Fetches every page of the job's groups and writes them to `path` ("-": stdout,
// nothing else is written there).
grpc::Status WriteDuplicates(v1::Updp::Stub* stub, const std::string& job_id,
                             const std::string& path, DuplicatesFormat format,
                             DuplicatesSummary* summary);

}  // namespace updp::client

#endif  // UPDP_CLIENT_DUPLICATES_OUT_H_
