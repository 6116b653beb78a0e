#include "server/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "server/util/atomic_file.h"

namespace updp::model {
namespace {

size_t ElementSize(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16") return 2;
  if (dtype == "U8" || dtype == "I8" || dtype == "BOOL") return 1;
  return 0;
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
  return absl::InvalidArgumentError(absl::StrCat("unsupported safetensors dtype '", s, "'"));
}

std::string DtypeToString(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "F32";
    case torch::kFloat16: return "F16";
    case torch::kBFloat16: return "BF16";
    case torch::kFloat64: return "F64";
    case torch::kInt64: return "I64";
    case torch::kInt32: return "I32";
    case torch::kInt16: return "I16";
    case torch::kInt8: return "I8";
    case torch::kUInt8: return "U8";
    case torch::kBool: return "BOOL";
    default: return "?";
  }
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": stat failed"));
  }
  size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": file too small for a safetensors header"));
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
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
  if (header_len > size - 8 || header_len > (100u << 20)) {
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
    return absl::InvalidArgumentError(absl::StrCat(path, ": header is not valid JSON: ", e.what()));
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
    const auto& e = *it;
    TensorInfo info;
    try {
      info.dtype = e.at("dtype").get<std::string>();
      info.shape = e.at("shape").get<std::vector<int64_t>>();
      auto off = e.at("data_offsets").get<std::vector<size_t>>();
      if (off.size() != 2) throw std::runtime_error("data_offsets must have 2 entries");
      info.begin = off[0];
      info.end = off[1];
    } catch (const std::exception& ex) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", it.key(), "': malformed entry: ", ex.what()));
    }
    size_t esize = ElementSize(info.dtype);
    if (esize == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", it.key(), "': unsupported dtype ", info.dtype));
    }
    size_t numel = 1;
    for (int64_t d : info.shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", it.key(), "': negative dimension"));
      }
      numel *= static_cast<size_t>(d);
    }
    if (info.end < info.begin || info.end > data_size) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", it.key(),
                                                     "': data offsets [", info.begin, ", ",
                                                     info.end, ") outside the file"));
    }
    if (info.end - info.begin != numel * esize) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", it.key(), "': ",
                                                     info.end - info.begin, " bytes for ", numel,
                                                     " elements of ", info.dtype));
    }
    f->tensors_[it.key()] = std::move(info);
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
    return absl::NotFoundError(absl::StrCat(path_, ": missing tensor '", name, "'"));
  }
  auto dtype = DtypeFromString(it->second.dtype);
  if (!dtype.ok()) return dtype.status();
  const char* base = static_cast<const char*>(map_) + data_offset_ + it->second.begin;
  // from_blob does not own the memory; clone() copies out of the mapping. Alignment of
  // the mapped data is not guaranteed, so copy into an aligned buffer first.
  torch::Tensor out = torch::empty(it->second.shape, torch::TensorOptions().dtype(*dtype));
  std::memcpy(out.data_ptr(), base, it->second.end - it->second.begin);
  if (as.has_value() && *as != *dtype) out = out.to(*as);
  return out;
}

absl::StatusOr<torch::Tensor> SafetensorsFile::MapTensor(
    std::shared_ptr<const SafetensorsFile> file, const std::string& name) {
  auto it = file->tensors_.find(name);
  if (it == file->tensors_.end()) {
    return absl::NotFoundError(absl::StrCat(file->path_, ": missing tensor '", name, "'"));
  }
  auto dtype = DtypeFromString(it->second.dtype);
  if (!dtype.ok()) return dtype.status();
  char* base = static_cast<char*>(file->map_) + file->data_offset_ + it->second.begin;
  if (reinterpret_cast<uintptr_t>(base) % c10::elementSize(*dtype) != 0) return file->Get(name);
  return torch::from_blob(base, it->second.shape, [file](void*) {},
                          torch::TensorOptions().dtype(*dtype));
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  return WriteFileAtomically(path, SerializeSafetensors(tensors, metadata));
}

std::string SerializeSafetensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                 const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, torch::Tensor>> sorted = tensors;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  std::vector<torch::Tensor> cpu;
  cpu.reserve(sorted.size());
  for (auto& [name, t] : sorted) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    size_t bytes = c.numel() * c.element_size();
    header[name] = {{"dtype", DtypeToString(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(c);
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');
  std::string blob;
  blob.reserve(8 + h.size() + offset);
  uint64_t hl = h.size();
  blob.append(reinterpret_cast<const char*>(&hl), 8);
  blob.append(h);
  for (auto& c : cpu) {
    blob.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  }
  return blob;
}

}  // namespace updp::model
