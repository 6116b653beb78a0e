// An embeddings upload (the UploadEmbeddings RPC without gRPC): the header is checked,
// the rows and ids stream into temporary files under data_dir/uploads (a .npy, float64
// converted to float32 on the way, and an ids file), each chunk checked as it arrives
// (whole rows, one id per row, finite values), and at the end the files are registered
// through the ordinary REGISTER job. The files live as long as the upload object: the
// caller keeps it until the job has ended, and an upload dropped half way leaves
// nothing behind.
#ifndef UPDP_SERVER_CORE_EMBEDDINGS_UPLOAD_H_
#define UPDP_SERVER_CORE_EMBEDDINGS_UPLOAD_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/server_core.h"

namespace updp::core {

enum class UploadDType { kUnspecified, kFloat16, kFloat32, kFloat64 };

struct UploadHeader {
  std::string name;
  int64_t rows = 0;
  int64_t dim = 0;
  UploadDType dtype = UploadDType::kUnspecified;
  bool has_ids = false;
};

class EmbeddingsUpload {
 public:
  // Checks the header (name valid and not taken by a ready dataset, rows and dim
  // positive, a dtype, rows x dim values within options().max_upload_bytes) and
  // creates the temporary files. INVALID_ARGUMENT naming the field, ALREADY_EXISTS for a
  // taken name, RESOURCE_EXHAUSTED over the size limit.
  static absl::StatusOr<std::unique_ptr<EmbeddingsUpload>> Begin(ServerCore* core,
                                                                 const UploadHeader& header);
  // Removes the temporary files.
  ~EmbeddingsUpload();
  EmbeddingsUpload(const EmbeddingsUpload&) = delete;
  EmbeddingsUpload& operator=(const EmbeddingsUpload&) = delete;

  // Checks and appends one chunk: `data` holds whole rows of the header's dtype, `ids`
  // one id per row (none when the header has no ids). INVALID_ARGUMENT naming the field
  // and, for values and ids, the row in the whole stream.
  absl::Status Append(absl::string_view data, const std::vector<absl::string_view>& ids);
  // Checks that the stream carried the announced rows, closes the files and queues their
  // REGISTER job. The files must outlive the job: keep this object until it ends.
  absl::StatusOr<Registration> Finish();

  int64_t rows_received() const { return received_; }
  const std::string& npy_path() const { return npy_path_; }
  const std::string& ids_path() const { return ids_path_; }

 private:
  EmbeddingsUpload() = default;
  absl::Status Write(std::FILE* f, const void* data, size_t n, const std::string& path);

  ServerCore* core_ = nullptr;
  UploadHeader header_;
  size_t in_row_bytes_ = 0;  // as uploaded
  int64_t received_ = 0;
  std::string npy_path_, ids_path_;
  std::FILE* npy_ = nullptr;
  std::FILE* ids_ = nullptr;
  std::vector<float> converted_;  // a float64 chunk as float32
};

// Start-up: removes what uploads a stopped server left in `dir` (creating `dir`).
absl::Status ClearUploadDir(const std::string& dir);

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_EMBEDDINGS_UPLOAD_H_
