// Memory-mapped reader and writer for the safetensors format
// (8-byte LE header length, JSON header, raw little-endian tensor bytes).
#ifndef UPDP_SERVER_MODEL_SAFETENSORS_H_
#define UPDP_SERVER_MODEL_SAFETENSORS_H_

#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/util/atomic_file.h"

namespace updp::model {

struct TensorInfo {
  std::string dtype;  // "F32", "F16", "BF16", "I64", "U8", ...
  std::vector<int64_t> shape;
  size_t begin = 0;  // byte offsets relative to the data section
  size_t end = 0;
};

// A safetensors file mapped read-only. Tensors returned by Get() are copies
// (so they outlive the mapping) converted to the requested dtype.
// Open() and FromBytes() validate the whole header (at most 100 MiB) before any tensor is
// touched: every entry's shape, dtype and offsets must agree and lie inside the data.
// Anything wrong is an InvalidArgument with a short message (values from the input are
// quoted and cut); Open() gives NotFound when the file cannot be opened.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Parses an in-memory safetensors blob (kept alive by the object); `name` is used
  // in error messages.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string bytes,
                                                                    const std::string& name);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool Has(const std::string& name) const { return tensors_.count(name) > 0; }
  // Bytes after the header (the data section); a file whose tensors end before this
  // carries trailing bytes.
  size_t data_bytes() const { return map_size_ - data_offset_; }
  // Copies tensor `name` into a new CPU tensor of dtype `as` (or its stored dtype if
  // as == nullopt).
  absl::StatusOr<torch::Tensor> Get(const std::string& name,
                                    std::optional<torch::ScalarType> as = std::nullopt) const;
  const std::string& path() const { return path_; }
  // A read-only tensor viewing the mapped bytes of `name` (no copy); `file` is kept
  // alive by the tensor. Falls back to a copy when the data is misaligned.
  static absl::StatusOr<torch::Tensor> MapTensor(std::shared_ptr<const SafetensorsFile> file,
                                                 const std::string& name);

 private:
  SafetensorsFile() = default;
  absl::Status Parse();
  std::string owned_;  // backing bytes for FromBytes (map_ points into it, not mapped)
  bool mapped_ = false;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  size_t data_offset_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device/dtype among F32/F16/BF16/I64/I32/U8) to `path`
// atomically: a temp file in the same directory, fsync, rename.
// Serialises tensors (sorted by name) to safetensors bytes.
std::string SerializeSafetensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                 const std::map<std::string, std::string>& metadata = {});
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// One tensor of a streamed file: declared before any of its bytes.
struct TensorSpec {
  std::string name;
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
};

// Writes a safetensors file larger than memory: the header (every tensor declared up
// front) at Create(), then the tensors' raw bytes in name order through any number of
// Append() calls, then Commit(): the file appears at `path` (temp file, fsync, rename)
// only if exactly the declared bytes came. Same bytes as WriteSafetensors.
class SafetensorsWriter {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, std::vector<TensorSpec> tensors,
      const std::map<std::string, std::string>& metadata = {});
  absl::Status Append(const void* data, size_t bytes);
  absl::Status Commit();

 private:
  SafetensorsWriter() = default;
  std::unique_ptr<AtomicFileWriter> file_;
  std::string path_;
  uint64_t declared_ = 0;  // data bytes of all tensors
  uint64_t written_ = 0;
};

absl::StatusOr<torch::ScalarType> DtypeFromString(const std::string& s);
std::string DtypeToString(torch::ScalarType t);

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_SAFETENSORS_H_
