// What `select --labeled FILE` accepts: the picks the tool itself wrote (CSV with an
// item_id column, or its JSON), a Label Studio export of tasks made from them
// (data.item_id), a JSON list of ids, or plain text with one item id per line, where
// a line starting with '/' is an image path instead (mapped to its item by the caller).
#ifndef UPDP_CLIENT_LABELED_LIST_H_
#define UPDP_CLIENT_LABELED_LIST_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace updp::client {

struct LabeledList {
  std::vector<std::string> ids;
  std::vector<std::string> paths;
  std::string format;  // what the file was read as, for messages
};

// INVALID_ARGUMENT naming the file when it is JSON of another shape or a CSV without
// an item_id column; NOT_FOUND when it cannot be read.
absl::StatusOr<LabeledList> ReadLabeledList(const std::string& path);

// One CSV record's fields (RFC 4180 quoting, as the tool writes them).
std::vector<std::string> SplitCsvLine(const std::string& line);

}  // namespace updp::client

#endif  // UPDP_CLIENT_LABELED_LIST_H_
