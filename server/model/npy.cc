#include "server/model/npy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "server/util/atomic_file.h"
#include "server/util/error_text.h"
#include "server/util/regular_file.h"

namespace updp::model {
namespace {

// numpy writes headers of a few hundred bytes; formats 2.0/3.0 allow up to 4 GiB.
constexpr size_t kMaxHeaderLen = size_t{1} << 20;
// numpy's own limit (NPY_MAXDIMS) is 32, 64 since numpy 2.0.
constexpr size_t kMaxDims = 64;

absl::StatusOr<torch::ScalarType> DtypeOf(const std::string& descr, const std::string& path) {
  if (descr == "<f8") return torch::kFloat64;
  if (descr == "<f4") return torch::kFloat32;
  if (descr == "<f2") return torch::kFloat16;
  if (descr == "<i8") return torch::kInt64;
  if (descr == "<i4") return torch::kInt32;
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": unsupported dtype ", Quote(descr),
                   " (expected '<f8', '<f4', '<f2', '<i8' or '<i4')"));
}

// Closes the descriptor when it goes out of scope.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() { ::close(fd_); }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

// Reads exactly `len` bytes at `offset` (pread may return fewer).
bool PreadAll(int fd, char* buf, size_t len, size_t offset) {
  while (len > 0) {
    const ssize_t n = ::pread(fd, buf, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<size_t>(n);
  }
  return true;
}

// Parses the Python dict literal numpy writes as the header, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// (keys in any order, either quote, any spacing, optional trailing commas). A plain loop
// over the text: std::regex recursed once per matched character in libstdc++, so a long
// run of spaces in a header overflowed the stack.
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text) {}

  // Fills descr, fortran_order and shape. Messages do not name the file.
  absl::Status Parse(NpyHeader* h) {
    if (!Eat('{')) return Error("expected '{'");
    bool have_descr = false, have_fortran = false, have_shape = false;
    while (!Eat('}')) {
      absl::StatusOr<std::string> key = String();
      if (!key.ok()) return key.status();
      if (!Eat(':')) return Error("expected ':'");
      bool* seen = nullptr;
      absl::Status st;
      if (*key == "descr") {
        seen = &have_descr;
        SkipSpace();
        if (pos_ < text_.size() && text_[pos_] == '[') {
          return Error("structured dtypes are not supported");
        }
        absl::StatusOr<std::string> descr = String();
        if (descr.ok()) h->descr = *std::move(descr);
        st = descr.status();
      } else if (*key == "fortran_order") {
        seen = &have_fortran;
        absl::StatusOr<bool> fortran = Bool();
        if (fortran.ok()) h->fortran_order = *fortran;
        st = fortran.status();
      } else if (*key == "shape") {
        seen = &have_shape;
        st = Shape(&h->shape);
      } else {
        return absl::InvalidArgumentError(absl::StrCat("unknown .npy header key ", Quote(*key)));
      }
      if (!st.ok()) return st;
      if (*seen)
        return absl::InvalidArgumentError(absl::StrCat("duplicate .npy header key ", Quote(*key)));
      *seen = true;
      if (Eat(',')) continue;
      if (Eat('}')) break;
      return Error("expected ',' or '}'");
    }
    // numpy pads with spaces and a final newline; tolerate NULs as well.
    while (pos_ < text_.size() && (absl::ascii_isspace(text_[pos_]) || text_[pos_] == '\0')) {
      ++pos_;
    }
    if (pos_ != text_.size()) return Error("unexpected text after the header dict");
    if (!have_descr) return absl::InvalidArgumentError(".npy header has no 'descr'");
    if (!have_shape) return absl::InvalidArgumentError(".npy header has no 'shape'");
    return absl::OkStatus();
  }

 private:
  void SkipSpace() {
    while (pos_ < text_.size() && absl::ascii_isspace(text_[pos_])) ++pos_;
  }

  bool Eat(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  // Where and what, with a short excerpt of the text from there.
  absl::Status Error(absl::string_view what) const {
    if (pos_ >= text_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad .npy header: ", what, " at the end of the header"));
    }
    return absl::InvalidArgumentError(absl::StrCat("bad .npy header: ", what, " at byte ", pos_,
                                                   " near ", Quote(text_.substr(pos_, 24))));
  }

  absl::StatusOr<std::string> String() {
    SkipSpace();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) {
      return Error("expected a quoted string");
    }
    const size_t end = text_.find(text_[pos_], pos_ + 1);
    if (end == absl::string_view::npos) return Error("unterminated string");
    const absl::string_view s = text_.substr(pos_ + 1, end - pos_ - 1);
    if (absl::StrContains(s, '\\')) return Error("escapes in strings are not supported");
    pos_ = end + 1;
    return std::string(s);
  }

  absl::StatusOr<bool> Bool() {
    SkipSpace();
    const absl::string_view rest = text_.substr(pos_);
    for (const auto& [word, value] : {std::pair<absl::string_view, bool>{"True", true},
                                      std::pair<absl::string_view, bool>{"False", false}}) {
      if (absl::StartsWith(rest, word) &&
          (rest.size() == word.size() || !absl::ascii_isalnum(rest[word.size()]))) {
        pos_ += word.size();
        return value;
      }
    }
    return Error("expected True or False");
  }

  // A tuple of non-negative ints: (), (5,), (2, 3), (2, 3,).
  absl::Status Shape(std::vector<int64_t>* shape) {
    if (!Eat('(')) return Error("the shape is not a tuple");
    bool want_entry = true;
    while (!Eat(')')) {
      if (!want_entry) return Error("expected ',' or ')' in the shape");
      SkipSpace();
      if (pos_ < text_.size() && text_[pos_] == '-') return Error("negative dimension");
      const size_t start = pos_;
      int64_t d = 0;
      while (pos_ < text_.size() && absl::ascii_isdigit(text_[pos_])) {
        if (__builtin_mul_overflow(d, 10, &d) || __builtin_add_overflow(d, text_[pos_] - '0', &d)) {
          pos_ = start;
          return Error("dimension does not fit in 64 bits");
        }
        ++pos_;
      }
      if (pos_ == start) return Error("expected a dimension");
      if (shape->size() == kMaxDims) return Error("more than 64 dimensions");
      shape->push_back(d);
      want_entry = Eat(',');
    }
    return absl::OkStatus();
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

// Reads and validates the header of the open file `fd` of `size` bytes.
absl::StatusOr<NpyHeader> ReadHeader(int fd, size_t size, const std::string& path) {
  unsigned char pre[12] = {0};
  if (size < 10 || !PreadAll(fd, reinterpret_cast<char*>(pre), 10, 0) ||
      std::memcmp(pre, "\x93NUMPY", 6) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a .npy file (bad magic)"));
  }
  const int major = pre[6];
  size_t header_len, prefix;
  if (major == 1) {
    header_len = pre[8] | (size_t{pre[9]} << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12 || !PreadAll(fd, reinterpret_cast<char*>(pre) + 10, 2, 10)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": truncated .npy header"));
    }
    header_len = pre[8] | (size_t{pre[9]} << 8) | (size_t{pre[10]} << 16) | (size_t{pre[11]} << 24);
    prefix = 12;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported .npy version ", major));
  }
  if (header_len > kMaxHeaderLen) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": .npy header of ", header_len, " bytes is over the limit of 1 MiB"));
  }
  if (prefix + header_len > size) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated .npy header"));
  }
  std::string text(header_len, '\0');
  if (!PreadAll(fd, text.data(), header_len, prefix)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated .npy header"));
  }
  NpyHeader h;
  if (absl::Status st = HeaderParser(text).Parse(&h); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", st.message()));
  }
  h.data_offset = prefix + header_len;
  if (h.fortran_order) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": Fortran-order .npy is not supported"));
  }
  auto dtype = DtypeOf(h.descr, path);
  if (!dtype.ok()) return dtype.status();
  // Overflow-checked: a shape like (2**62, 8) must not wrap to a small size and pass the
  // check below. Zero dimensions are skipped in the product because LibTorch computes
  // strides from the others even for an empty tensor.
  const auto too_large = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": .npy shape ", Quote(absl::StrJoin(h.shape, ", "), 60), " is too large"));
  };
  int64_t nonzero = 1;
  bool empty = false;
  for (int64_t d : h.shape) {
    if (d == 0) {
      empty = true;
    } else if (__builtin_mul_overflow(nonzero, d, &nonzero)) {
      return too_large();
    }
  }
  uint64_t need = 0;
  if (!empty && __builtin_mul_overflow(static_cast<uint64_t>(nonzero),
                                       static_cast<uint64_t>(c10::elementSize(*dtype)), &need)) {
    return too_large();
  }
  if (size - h.data_offset < need) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": truncated .npy: shape ", Quote(absl::StrJoin(h.shape, ", "), 60),
                     " needs ", need, " data bytes, file has ", size - h.data_offset));
  }
  return h;
}

}  // namespace

absl::StatusOr<NpyHeader> ReadNpyHeader(const std::string& path) {
  size_t size = 0;
  absl::StatusOr<int> fd = OpenRegularFile(path, &size);
  if (!fd.ok()) return fd.status();
  FdCloser closer(*fd);
  return ReadHeader(*fd, size, path);
}

absl::StatusOr<torch::Tensor> MapNpy(const std::string& path) {
  size_t size = 0;
  absl::StatusOr<int> fd = OpenRegularFile(path, &size);
  if (!fd.ok()) return fd.status();
  FdCloser closer(*fd);
  // Header and mapping come from the same descriptor, so both see the same file.
  auto h = ReadHeader(*fd, size, path);
  if (!h.ok()) return h.status();
  auto dtype = DtypeOf(h->descr, path);
  if (!dtype.ok()) return dtype.status();
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, *fd, 0);
  if (map == MAP_FAILED) {
    return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
  }
  char* data = static_cast<char*>(map) + h->data_offset;
  const auto options = torch::TensorOptions().dtype(*dtype);
  // The header is padded so data starts 64-byte aligned in files numpy writes; other
  // writers may misalign, in which case copy.
  if (reinterpret_cast<uintptr_t>(data) % c10::elementSize(*dtype) != 0) {
    torch::Tensor t;
    try {
      t = torch::empty(h->shape, options);
      // An empty tensor has no storage: memcpy with a null pointer is undefined even for 0 bytes.
      if (t.numel() > 0) std::memcpy(t.data_ptr(), data, t.numel() * t.element_size());
    } catch (const std::exception& e) {
      munmap(map, size);
      return absl::InternalError(absl::StrCat(path, ": ", CleanErrorText(e.what(), 200)));
    }
    munmap(map, size);
    return t;
  }
  try {
    return torch::from_blob(
        data, h->shape, [map, size](void*) { munmap(map, size); }, options);
  } catch (const std::exception& e) {
    // Not expected with a validated shape. The mapping is left alone: whether the deleter
    // already ran is unknown.
    return absl::InternalError(absl::StrCat(path, ": ", CleanErrorText(e.what(), 200)));
  }
}

absl::StatusOr<std::unique_ptr<NpyReader>> NpyReader::Open(const std::string& path) {
  size_t size = 0;
  absl::StatusOr<int> fd = OpenRegularFile(path, &size);
  if (!fd.ok()) return fd.status();
  std::unique_ptr<NpyReader> r(new NpyReader());
  r->fd_ = *fd;  // closed by the destructor from here on
  r->path_ = path;
  auto h = ReadHeader(*fd, size, path);
  if (!h.ok()) return h.status();
  r->header_ = *std::move(h);
  auto dtype = DtypeOf(r->header_.descr, path);
  if (!dtype.ok()) return dtype.status();
  r->dtype_ = *dtype;
  if (r->header_.shape.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": a 0-d array has no rows"));
  }
  // ReadHeader checked that the whole array fits in the file, but with no rows (shape
  // (0, 2**61)) the row size alone may still overflow.
  r->row_bytes_ = c10::elementSize(r->dtype_);
  for (size_t d = 1; d < r->header_.shape.size(); ++d) {
    if (__builtin_mul_overflow(r->row_bytes_, static_cast<size_t>(r->header_.shape[d]),
                               &r->row_bytes_)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": .npy rows of shape ",
                       Quote(absl::StrJoin(r->header_.shape, ", "), 60), " are too large"));
    }
  }
  return r;
}

NpyReader::~NpyReader() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status NpyReader::ReadRows(int64_t begin, int64_t count, void* out) const {
  // Not begin + count > rows: the sum may overflow.
  if (begin < 0 || count < 0 || begin > header_.shape[0] || count > header_.shape[0] - begin) {
    return absl::OutOfRangeError(
        absl::StrCat(path_, ": rows ", begin, "+", count, " of ", header_.shape[0]));
  }
  if (!PreadAll(fd_, static_cast<char*>(out), static_cast<size_t>(count) * row_bytes_,
                header_.data_offset + static_cast<size_t>(begin) * row_bytes_)) {
    return absl::DataLossError(absl::StrCat(path_, ": cannot read rows ", begin, "..",
                                            begin + count - 1,
                                            " (the file changed or got shorter)"));
  }
  return absl::OkStatus();
}

absl::Status WriteNpy(const std::string& path, const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  std::string descr;
  switch (c.scalar_type()) {
    case torch::kFloat64:
      descr = "<f8";
      break;
    case torch::kFloat32:
      descr = "<f4";
      break;
    case torch::kFloat16:
      descr = "<f2";
      break;
    case torch::kInt64:
      descr = "<i8";
      break;
    case torch::kInt32:
      descr = "<i4";
      break;
    default:
      return absl::InvalidArgumentError("WriteNpy: unsupported dtype");
  }
  std::string shape = absl::StrJoin(c.sizes(), ", ");
  if (c.dim() == 1) shape += ",";
  std::string header =
      absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (", shape, "), }");
  while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  if (header.size() > 0xffff) {
    return absl::InvalidArgumentError("WriteNpy: too many dimensions for a .npy 1.0 header");
  }
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
