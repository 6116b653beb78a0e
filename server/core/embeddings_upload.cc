#include "server/core/embeddings_upload.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/core/names.h"
#include "server/util/error_text.h"
#include "server/util/remove_tree.h"

// The chunks carry little-endian values and the temporary .npy says '<': both are the
// host's layout, unconverted.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "uploads assume a little-endian host");

namespace updp::core {
namespace fs = std::filesystem;

namespace {

const char* DTypeName(UploadDType t) {
  switch (t) {
    case UploadDType::kFloat16:
      return "float16";
    case UploadDType::kFloat32:
      return "float32";
    default:
      return "float64";
  }
}

size_t ElementSize(UploadDType t) {
  switch (t) {
    case UploadDType::kFloat16:
      return 2;
    case UploadDType::kFloat32:
      return 4;
    default:
      return 8;
  }
}

// The first value of `n` at `p` (elements of `Bits`, any alignment) whose exponent bits
// are all set (Inf or NaN), or n.
template <typename Bits>
size_t FirstNonFinite(const char* p, size_t n, Bits exp_mask) {
  for (size_t i = 0; i < n; ++i) {
    Bits v;
    std::memcpy(&v, p + i * sizeof(Bits), sizeof(Bits));
    if ((v & exp_mask) == exp_mask) return i;
  }
  return n;
}

// A .npy 1.0 header for a C-order [rows, dim] array, padded to 64 bytes as numpy does.
std::string NpyHeader(const char* descr, int64_t rows, int64_t dim) {
  std::string dict = absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (",
                                  rows, ", ", dim, "), }");
  while ((10 + dict.size() + 1) % 64 != 0) dict.push_back(' ');
  dict.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<char>(dict.size() & 0xff));
  out.push_back(static_cast<char>(dict.size() >> 8));
  return out + dict;
}

// Creates `path` (never an existing file).
absl::StatusOr<std::FILE*> CreateFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "wbx");
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  return f;
}

// Why `id` cannot be an item id of an ids file (one id per line, stripped), or nullptr.
const char* BadId(absl::string_view id) {
  if (id.empty()) return "is empty";
  if (id.find_first_of("\n\r") != absl::string_view::npos) return "contains a line break";
  if (absl::ascii_isspace(id.front()) || absl::ascii_isspace(id.back())) {
    return "has leading or trailing whitespace";
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EmbeddingsUpload>> EmbeddingsUpload::Begin(ServerCore* core,
                                                                          const UploadHeader& h) {
  if (auto s = ValidateName("header.name", h.name); !s.ok()) return s;
  if (core->GetDataset(h.name).ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("header.name: dataset ", Quote(h.name), " already exists"));
  }
  if (h.rows <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("header.rows: must be positive, not ", h.rows));
  }
  if (h.dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("header.dim: must be positive, not ", h.dim));
  }
  if (h.dtype == UploadDType::kUnspecified) {
    return absl::InvalidArgumentError(
        "header.dtype: must be EMBEDDING_DTYPE_FLOAT16, EMBEDDING_DTYPE_FLOAT32 or "
        "EMBEDDING_DTYPE_FLOAT64");
  }
  const int64_t limit = core->options().max_upload_bytes;
  int64_t bytes = 0;
  if (__builtin_mul_overflow(h.rows, h.dim, &bytes) ||
      __builtin_mul_overflow(bytes, static_cast<int64_t>(ElementSize(h.dtype)), &bytes) ||
      bytes > limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "header: ", h.rows, " rows of ", h.dim, " ", DTypeName(h.dtype), " values are over the ",
        "server's upload limit of ", limit, " bytes (--max_upload_bytes)"));
  }
  std::unique_ptr<EmbeddingsUpload> u(new EmbeddingsUpload());
  u->core_ = core;
  u->header_ = h;
  u->in_row_bytes_ = static_cast<size_t>(h.dim) * ElementSize(h.dtype);
  // Unique per upload: two uploads of one name may run at once (one loses at the end).
  static std::atomic<uint64_t> counter{0};
  const std::string stem =
      absl::StrCat(core->UploadDir(), "/", h.name, ".", ::getpid(), ".",
                   std::chrono::system_clock::now().time_since_epoch().count(), ".", counter++);
  u->npy_path_ = stem + ".npy";
  auto npy = CreateFile(u->npy_path_);
  if (!npy.ok()) {
    u->npy_path_.clear();  // not ours to remove
    return npy.status();
  }
  u->npy_ = *npy;
  const std::string npy_header =
      NpyHeader(h.dtype == UploadDType::kFloat16 ? "<f2" : "<f4", h.rows, h.dim);
  if (auto s = u->Write(u->npy_, npy_header.data(), npy_header.size(), u->npy_path_); !s.ok()) {
    return s;
  }
  if (h.has_ids) {
    u->ids_path_ = stem + ".ids";
    auto ids = CreateFile(u->ids_path_);
    if (!ids.ok()) {
      u->ids_path_.clear();
      return ids.status();
    }
    u->ids_ = *ids;
  }
  return u;
}

EmbeddingsUpload::~EmbeddingsUpload() {
  if (npy_) std::fclose(npy_);
  if (ids_) std::fclose(ids_);
  if (!npy_path_.empty()) ::unlink(npy_path_.c_str());
  if (!ids_path_.empty()) ::unlink(ids_path_.c_str());
}

absl::Status EmbeddingsUpload::Write(std::FILE* f, const void* data, size_t n,
                                     const std::string& path) {
  if (n > 0 && std::fwrite(data, 1, n, f) != n) {
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status EmbeddingsUpload::Append(absl::string_view data,
                                      const std::vector<absl::string_view>& ids) {
  if (npy_ == nullptr) return absl::FailedPreconditionError("the upload is already finished");
  if (data.size() % in_row_bytes_ != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk.data: ", data.size(), " bytes is not a whole number of rows of ",
                     header_.dim, " ", DTypeName(header_.dtype), " values"));
  }
  const auto n = static_cast<int64_t>(data.size() / in_row_bytes_);
  if (header_.has_ids && static_cast<int64_t>(ids.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk.ids: ", ids.size(), " ids for ", n, " rows"));
  }
  if (!header_.has_ids && !ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk.ids: ", ids.size(), " ids, but the header's has_ids is false"));
  }
  if (n > header_.rows - received_) {
    return absl::InvalidArgumentError(absl::StrCat("rows: the header said ", header_.rows,
                                                   ", the stream carried more (", received_ + n,
                                                   " so far)"));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (const char* why = BadId(ids[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk.ids: the id of row ", received_ + static_cast<int64_t>(i), " ", why));
    }
  }
  const size_t values = static_cast<size_t>(n) * static_cast<size_t>(header_.dim);
  const void* out = data.data();
  size_t bad = values;
  bool out_of_range = false;
  switch (header_.dtype) {
    case UploadDType::kFloat16:
      bad = FirstNonFinite<uint16_t>(data.data(), values, 0x7c00);
      break;
    case UploadDType::kFloat32:
      bad = FirstNonFinite<uint32_t>(data.data(), values, 0x7f800000u);
      break;
    default: {  // float64, stored as float32
      converted_.resize(values);
      for (size_t i = 0; i < values; ++i) {
        double d;
        std::memcpy(&d, data.data() + i * sizeof(double), sizeof(double));
        converted_[i] = static_cast<float>(d);
      }
      // Also catches a finite float64 that overflows float32.
      bad = FirstNonFinite<uint32_t>(reinterpret_cast<const char*>(converted_.data()), values,
                                     0x7f800000u);
      if (bad < values) {
        double d;
        std::memcpy(&d, data.data() + bad * sizeof(double), sizeof(double));
        out_of_range = std::isfinite(d);
      }
      out = converted_.data();
    }
  }
  if (bad < values) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk.data: row ", received_ + static_cast<int64_t>(bad / header_.dim),
        out_of_range ? " has a value outside the float32 range" : " contains NaN or Inf"));
  }
  const size_t out_bytes = values * (header_.dtype == UploadDType::kFloat16 ? 2 : 4);
  if (auto s = Write(npy_, out, out_bytes, npy_path_); !s.ok()) return s;
  for (absl::string_view id : ids) {
    if (auto s = Write(ids_, id.data(), id.size(), ids_path_); !s.ok()) return s;
    if (auto s = Write(ids_, "\n", 1, ids_path_); !s.ok()) return s;
  }
  received_ += n;
  return absl::OkStatus();
}

absl::StatusOr<Registration> EmbeddingsUpload::Finish() {
  if (npy_ == nullptr) return absl::FailedPreconditionError("the upload is already finished");
  if (received_ != header_.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows: the header said ", header_.rows, ", the stream carried ", received_));
  }
  for (auto [f, path] : {std::pair<std::FILE**, std::string*>{&npy_, &npy_path_},
                         std::pair<std::FILE**, std::string*>{&ids_, &ids_path_}}) {
    if (*f == nullptr) continue;
    const bool ok = std::fclose(*f) == 0;
    *f = nullptr;
    if (!ok) {
      return absl::InternalError(absl::StrCat("cannot write ", *path, ": ", std::strerror(errno)));
    }
  }
  auto r = core_->StartUploadRegistration(header_.name, npy_path_, ids_path_);
  // The name was free at the header; another registration may have taken it since.
  if (absl::IsAlreadyExists(r.status()) && absl::StartsWith(r.status().message(), "name: ")) {
    return absl::AlreadyExistsError(absl::StrCat("header.", r.status().message()));
  }
  return r;
}

absl::Status ClearUploadDir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  std::vector<std::string> left;  // listed first: not removed under the iterator
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    left.push_back(it->path().string());
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  for (const auto& path : left) {
    if (auto s = RemoveTree(path); !s.ok()) return s;
  }
  if (!left.empty()) {
    std::cerr << "updp-server: removed " << left.size()
              << " file(s) of uploads a stopped server left in " << dir << "\n";
  }
  return absl::OkStatus();
}

}  // namespace updp::core
