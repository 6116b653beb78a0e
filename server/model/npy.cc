#include "server/model/npy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/util/atomic_file.h"

namespace updp::model {
namespace {

absl::StatusOr<torch::ScalarType> DtypeOf(const std::string& descr, const std::string& path) {
  if (descr == "<f4") return torch::kFloat32;
  if (descr == "<f2") return torch::kFloat16;
  if (descr == "<i8") return torch::kInt64;
  if (descr == "<i4") return torch::kInt32;
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": unsupported dtype '", descr, "' (expected float32 '<f4' or float16 '<f2')"));
}

}  // namespace

absl::StatusOr<NpyHeader> ReadNpyHeader(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  struct stat st;
  fstat(fd, &st);
  const size_t size = static_cast<size_t>(st.st_size);
  char pre[12] = {0};
  ssize_t n = ::pread(fd, pre, sizeof(pre), 0);
  if (n < 10 || std::memcmp(pre, "\x93NUMPY", 6) != 0) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a .npy file (bad magic)"));
  }
  const int major = static_cast<unsigned char>(pre[6]);
  size_t header_len, prefix;
  if (major == 1) {
    header_len = static_cast<unsigned char>(pre[8]) | (static_cast<unsigned char>(pre[9]) << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    uint32_t hl;
    std::memcpy(&hl, pre + 8, 4);
    header_len = hl;
    prefix = 12;
  } else {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported .npy version ", major));
  }
  if (prefix + header_len > size) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated .npy header"));
  }
  std::string header(header_len, '\0');
  n = ::pread(fd, header.data(), header_len, static_cast<off_t>(prefix));
  ::close(fd);
  if (n != static_cast<ssize_t>(header_len)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated .npy header"));
  }
  static const std::regex kDescr("'descr'\\s*:\\s*'([^']*)'");
  static const std::regex kFortran("'fortran_order'\\s*:\\s*(True|False)");
  static const std::regex kShape("'shape'\\s*:\\s*\\(([^)]*)\\)");
  std::smatch m;
  NpyHeader h;
  if (!std::regex_search(header, m, kDescr)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": .npy header has no descr"));
  }
  h.descr = m[1];
  if (std::regex_search(header, m, kFortran)) h.fortran_order = m[1] == "True";
  if (!std::regex_search(header, m, kShape)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": .npy header has no shape"));
  }
  for (absl::string_view part : absl::StrSplit(std::string(m[1]), ',', absl::SkipWhitespace())) {
    int64_t d = 0;
    std::string p(absl::StripAsciiWhitespace(part));
    try {
      d = std::stoll(p);
    } catch (...) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad .npy shape entry '", p, "'"));
    }
    if (d < 0) return absl::InvalidArgumentError(absl::StrCat(path, ": negative .npy dimension"));
    h.shape.push_back(d);
  }
  h.data_offset = prefix + header_len;
  if (h.fortran_order) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": Fortran-order .npy is not supported"));
  }
  auto dtype = DtypeOf(h.descr, path);
  if (!dtype.ok()) return dtype.status();
  size_t numel = 1;
  for (int64_t d : h.shape) numel *= static_cast<size_t>(d);
  const size_t need = numel * c10::elementSize(*dtype);
  if (size - h.data_offset < need) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated .npy: shape (",
                                                   absl::StrJoin(h.shape, ","), ") needs ", need,
                                                   " data bytes, file has ", size - h.data_offset));
  }
  return h;
}

absl::StatusOr<torch::Tensor> MapNpy(const std::string& path) {
  auto h = ReadNpyHeader(path);
  if (!h.ok()) return h.status();
  auto dtype = DtypeOf(h->descr, path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  struct stat st;
  fstat(fd, &st);
  const size_t size = static_cast<size_t>(st.st_size);
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return absl::InternalError(absl::StrCat(path, ": mmap failed"));
  char* data = static_cast<char*>(map) + h->data_offset;
  auto deleter = [map, size](void*) { munmap(map, size); };
  // The header is padded so data starts 64-byte aligned in files numpy writes; other
  // writers may misalign, in which case copy.
  if (reinterpret_cast<uintptr_t>(data) % c10::elementSize(*dtype) != 0) {
    torch::Tensor t = torch::empty(h->shape, torch::TensorOptions().dtype(*dtype));
    std::memcpy(t.data_ptr(), data, t.numel() * t.element_size());
    munmap(map, size);
    return t;
  }
  return torch::from_blob(data, h->shape, deleter, torch::TensorOptions().dtype(*dtype));
}

absl::Status WriteNpy(const std::string& path, const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  std::string descr;
  switch (c.scalar_type()) {
    case torch::kFloat32: descr = "<f4"; break;
    case torch::kFloat16: descr = "<f2"; break;
    case torch::kInt64: descr = "<i8"; break;
    case torch::kInt32: descr = "<i4"; break;
    default: return absl::InvalidArgumentError("WriteNpy: unsupported dtype");
  }
  std::string shape = absl::StrJoin(c.sizes(), ", ");
  if (c.dim() == 1) shape += ",";
  std::string header =
      absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (", shape, "), }");
  while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  return WriteFileAtomically(path, out);
}

}  // namespace updp::model
