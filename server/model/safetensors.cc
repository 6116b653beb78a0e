#include "server/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/util/atomic_file.h"
#include "server/util/error_text.h"
#include "server/util/regular_file.h"

namespace updp::model {
namespace {

// The BLIP-2 checkpoint's header is ~100 KB; anything near this is not a real file.
constexpr uint64_t kMaxHeaderLen = uint64_t{100} << 20;
// More dimensions than any tensor here has (LibTorch itself has no small limit).
constexpr size_t kMaxDims = 64;

size_t ElementSize(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16") return 2;
  if (dtype == "U8" || dtype == "I8" || dtype == "BOOL") return 1;
  return 0;
}

// Validates one tensor entry of the header against a data section of `data_size` bytes:
// every size is overflow-checked, so nothing reaches LibTorch unless its bytes lie inside
// the data. Messages name neither the file nor the tensor.
absl::StatusOr<TensorInfo> ParseEntry(const nlohmann::json& e, size_t data_size) {
  if (!e.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("entry is ", e.type_name(), ", not an object"));
  }
  TensorInfo info;
  auto dtype = e.find("dtype");
  if (dtype == e.end() || !dtype->is_string()) {
    return absl::InvalidArgumentError("\"dtype\" is missing or not a string");
  }
  info.dtype = dtype->get<std::string>();
  const size_t esize = ElementSize(info.dtype);
  if (esize == 0) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported dtype ", Quote(info.dtype)));
  }
  auto shape = e.find("shape");
  if (shape == e.end() || !shape->is_array()) {
    return absl::InvalidArgumentError("\"shape\" is missing or not an array");
  }
  if (shape->size() > kMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrCat(shape->size(), " dimensions (at most ", kMaxDims, " are supported)"));
  }
  // LibTorch derives strides from the non-zero dimensions even for an empty tensor, so
  // their product must fit too.
  int64_t nonzero = 1;
  bool empty = false;
  for (size_t i = 0; i < shape->size(); ++i) {
    const nlohmann::json& v = (*shape)[i];
    if (!v.is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape entry ", i, " is ", v.type_name(), ", not an integer"));
    }
    if (!v.is_number_unsigned()) {
      return absl::InvalidArgumentError(absl::StrCat("shape entry ", i, " is negative"));
    }
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat("shape entry ", i, " is too large"));
    }
    const int64_t d = static_cast<int64_t>(u);
    if (d == 0) {
      empty = true;
    } else if (__builtin_mul_overflow(nonzero, d, &nonzero)) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape is too large (the element count overflows at entry ", i, ")"));
    }
    info.shape.push_back(d);
  }
  uint64_t bytes = 0;
  if (!empty && __builtin_mul_overflow(static_cast<uint64_t>(nonzero), esize, &bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shape ", Quote(absl::StrJoin(info.shape, ", "), 60), " is too large"));
  }
  auto off = e.find("data_offsets");
  if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned()) {
    return absl::InvalidArgumentError("\"data_offsets\" is not two non-negative integers");
  }
  const uint64_t begin = (*off)[0].get<uint64_t>();
  const uint64_t end = (*off)[1].get<uint64_t>();
  if (end < begin || end > data_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data offsets [", begin, ", ", end, ") outside the data section of ", data_size, " bytes"));
  }
  if (end - begin != bytes) {
    return absl::InvalidArgumentError(absl::StrCat(end - begin, " data bytes for shape ",
                                                   Quote(absl::StrJoin(info.shape, ", "), 60),
                                                   " of ", info.dtype, ", which needs ", bytes));
  }
  info.begin = begin;
  info.end = end;
  return info;
}

}  // namespace

absl::StatusOr<torch::ScalarType> DtypeFromString(const std::string& s) {
  if (s == "F32") return torch::kFloat32;
  if (s == "F16") return torch::kFloat16;
  if (s == "BF16") return torch::kBFloat16;
  if (s == "F64") return torch::kFloat64;
  if (s == "I64") return torch::kInt64;
  if (s == "I32") return torch::kInt32;
  if (s == "I16") return torch::kInt16;
  if (s == "I8") return torch::kInt8;
  if (s == "U8") return torch::kUInt8;
  if (s == "BOOL") return torch::kBool;
  return absl::InvalidArgumentError(absl::StrCat("unsupported safetensors dtype ", Quote(s)));
}

std::string DtypeToString(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32:
      return "F32";
    case torch::kFloat16:
      return "F16";
    case torch::kBFloat16:
      return "BF16";
    case torch::kFloat64:
      return "F64";
    case torch::kInt64:
      return "I64";
    case torch::kInt32:
      return "I32";
    case torch::kInt16:
      return "I16";
    case torch::kInt8:
      return "I8";
    case torch::kUInt8:
      return "U8";
    case torch::kBool:
      return "BOOL";
    default:
      return "?";
  }
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  size_t size = 0;
  auto opened = OpenRegularFile(path, &size);
  if (!opened.ok()) return opened.status();
  const int fd = *opened;
  if (size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": file too small for a safetensors header"));
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (map == MAP_FAILED) {
    return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(err)));
  }
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_ = map;
  f->map_size_ = size;
  f->mapped_ = true;
  if (auto st = f->Parse(); !st.ok()) return st;
  return f;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(
    std::string bytes, const std::string& name) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  f->owned_ = std::move(bytes);
  if (f->owned_.size() < 8) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": too small for a safetensors header"));
  }
  f->map_ = f->owned_.data();
  f->map_size_ = f->owned_.size();
  if (auto st = f->Parse(); !st.ok()) return st;
  return f;
}

absl::Status SafetensorsFile::Parse() {
  const std::string& path = path_;
  const void* map = map_;
  const size_t size = map_size_;
  SafetensorsFile* f = this;
  uint64_t header_len = 0;
  std::memcpy(&header_len, map, 8);  // little-endian hosts only (x86-64, aarch64)
  if (header_len > kMaxHeaderLen) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header length ", header_len, " is over the limit of 100 MiB"));
  }
  if (header_len > size - 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header length ", header_len, " exceeds file size ", size));
  }
  f->data_offset_ = 8 + header_len;
  const size_t data_size = size - f->data_offset_;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(static_cast<const char*>(map) + 8,
                                   static_cast<const char*>(map) + 8 + header_len);
  } catch (const std::exception& e) {
    // nlohmann's message quotes the offending token, which may be long.
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header is not valid JSON: ", CleanErrorText(e.what(), 160)));
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header is not a JSON object"));
  }
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_object()) {
        for (auto m = it->begin(); m != it->end(); ++m) {
          if (m->is_string()) f->metadata_[m.key()] = m->get<std::string>();
        }
      }
      continue;
    }
    absl::StatusOr<TensorInfo> info = ParseEntry(*it, data_size);
    if (!info.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", Quote(it.key()), ": ", info.status().message()));
    }
    f->tensors_[it.key()] = *std::move(info);
  }
  return absl::OkStatus();
}

SafetensorsFile::~SafetensorsFile() {
  if (mapped_ && map_ != nullptr) munmap(map_, map_size_);
}

absl::StatusOr<torch::Tensor> SafetensorsFile::Get(const std::string& name,
                                                   std::optional<torch::ScalarType> as) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": missing tensor ", Quote(name)));
  }
  auto dtype = DtypeFromString(it->second.dtype);
  if (!dtype.ok()) return dtype.status();
  const char* base = static_cast<const char*>(map_) + data_offset_ + it->second.begin;
  // A copy into a new (aligned) tensor that outlives the mapping. Parse() checked the
  // shape against the bytes; the try only keeps a LibTorch error (and its backtrace) in.
  try {
    torch::Tensor out = torch::empty(it->second.shape, torch::TensorOptions().dtype(*dtype));
    // An empty tensor has no storage: memcpy with a null pointer is undefined even for 0 bytes.
    if (it->second.end > it->second.begin) {
      std::memcpy(out.data_ptr(), base, it->second.end - it->second.begin);
    }
    if (as.has_value() && *as != *dtype) out = out.to(*as);
    return out;
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(path_, ": tensor ", Quote(name), ": ", CleanErrorText(e.what(), 200)));
  }
}

absl::StatusOr<torch::Tensor> SafetensorsFile::MapTensor(
    std::shared_ptr<const SafetensorsFile> file, const std::string& name) {
  auto it = file->tensors_.find(name);
  if (it == file->tensors_.end()) {
    return absl::NotFoundError(absl::StrCat(file->path_, ": missing tensor ", Quote(name)));
  }
  auto dtype = DtypeFromString(it->second.dtype);
  if (!dtype.ok()) return dtype.status();
  char* base = static_cast<char*>(file->map_) + file->data_offset_ + it->second.begin;
  if (reinterpret_cast<uintptr_t>(base) % c10::elementSize(*dtype) != 0) return file->Get(name);
  try {
    return torch::from_blob(
        base, it->second.shape, [file](void*) {}, torch::TensorOptions().dtype(*dtype));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(file->path_, ": tensor ", Quote(name), ": ", CleanErrorText(e.what(), 200)));
  }
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  return WriteFileAtomically(path, SerializeSafetensors(tensors, metadata));
}

namespace {

// The 8-byte header length and the JSON header (padded to 8 bytes) for tensors sorted
// by name, whose data follow in that order; `data_bytes` gets their total size.
std::string HeaderBlob(const std::vector<TensorSpec>& sorted,
                       const std::map<std::string, std::string>& metadata, size_t* data_bytes) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& t : sorted) {
    size_t bytes = c10::elementSize(t.dtype);
    for (int64_t d : t.shape) bytes *= static_cast<size_t>(d);
    header[t.name] = {{"dtype", DtypeToString(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  *data_bytes = offset;
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');
  const uint64_t hl = h.size();
  return std::string(reinterpret_cast<const char*>(&hl), 8) + h;
}

}  // namespace

std::string SerializeSafetensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                 const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, torch::Tensor>> sorted = tensors;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<TensorSpec> specs;
  std::vector<torch::Tensor> cpu;
  cpu.reserve(sorted.size());
  for (auto& [name, t] : sorted) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    specs.push_back({name, c.scalar_type(), c.sizes().vec()});
    cpu.push_back(c);
  }
  size_t data_bytes = 0;
  std::string blob = HeaderBlob(specs, metadata, &data_bytes);
  blob.reserve(blob.size() + data_bytes);
  for (auto& c : cpu) {
    blob.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  }
  return blob;
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, std::vector<TensorSpec> tensors,
    const std::map<std::string, std::string>& metadata) {
  std::sort(tensors.begin(), tensors.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = path;
  size_t data_bytes = 0;
  const std::string header = HeaderBlob(tensors, metadata, &data_bytes);
  w->declared_ = data_bytes;
  auto file = AtomicFileWriter::Create(path);
  if (!file.ok()) return file.status();
  w->file_ = std::move(*file);
  if (auto s = w->file_->Write(header); !s.ok()) return s;
  return w;
}

absl::Status SafetensorsWriter::Append(const void* data, size_t bytes) {
  if (bytes > declared_ - written_) {
    return absl::InternalError(
        absl::StrCat(path_, ": more tensor bytes than declared (", declared_, ")"));
  }
  written_ += bytes;
  return file_->Write(std::string_view(static_cast<const char*>(data), bytes));
}

absl::Status SafetensorsWriter::Commit() {
  if (written_ != declared_) {
    return absl::InternalError(absl::StrCat(path_, ": ", written_, " of the declared ", declared_,
                                            " tensor bytes written"));
  }
  return file_->Commit();
}

}  // namespace updp::model
