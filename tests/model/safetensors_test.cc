#include "server/model/safetensors.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>

#include "absl/strings/str_cat.h"
#include "server/util/atomic_file.h"
#include "tests/model/scratch_dir.h"

namespace updp::model {
namespace {

class Safetensors : public ScratchDirTest {
 protected:
  void ExpectRejected(const std::string& bytes, const std::string& what);
};

TEST_F(Safetensors, RoundTripAllDtypes) {
  std::string p = TmpPath("rt.safetensors");
  torch::Tensor a = torch::randn({3, 4});
  torch::Tensor b = torch::randn({5}).to(torch::kFloat16);
  torch::Tensor c = torch::randn({2, 2}).to(torch::kBFloat16);
  torch::Tensor d = torch::arange(6, torch::kLong);
  ASSERT_TRUE(WriteSafetensors(p, {{"a", a}, {"b", b}, {"c", c}, {"d", d}}, {{"k", "v"}}).ok());
  auto f = SafetensorsFile::Open(p);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("k"), "v");
  EXPECT_TRUE(torch::equal(*(*f)->Get("a"), a));
  EXPECT_TRUE(torch::equal(*(*f)->Get("b"), b));
  EXPECT_TRUE(torch::equal(*(*f)->Get("c"), c));
  EXPECT_TRUE(torch::equal(*(*f)->Get("d"), d));
  EXPECT_TRUE(torch::allclose(*(*f)->Get("b", torch::kFloat32), b.to(torch::kFloat32)));
  auto missing = (*f)->Get("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("'nope'"), std::string::npos);
}

TEST_F(Safetensors, RejectsBadHeaders) {
  std::string p = TmpPath("bad.safetensors");
  // Header length larger than the file.
  std::string blob(8, '\0');
  uint64_t big = 1000;
  std::memcpy(blob.data(), &big, 8);
  blob += "{}";
  ASSERT_TRUE(WriteFileAtomically(p, blob).ok());
  auto f = SafetensorsFile::Open(p);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);

  // Offsets outside the data section.
  std::string h = R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  blob.assign(8, '\0');
  uint64_t hl = h.size();
  std::memcpy(blob.data(), &hl, 8);
  blob += h + std::string(8, '\0');
  ASSERT_TRUE(WriteFileAtomically(p, blob).ok());
  f = SafetensorsFile::Open(p);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("'x'"), std::string::npos);

  // Byte count inconsistent with shape and dtype.
  h = R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  blob.assign(8, '\0');
  hl = h.size();
  std::memcpy(blob.data(), &hl, 8);
  blob += h + std::string(8, '\0');
  ASSERT_TRUE(WriteFileAtomically(p, blob).ok());
  f = SafetensorsFile::Open(p);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
}

// 8-byte little-endian header length, the header, the data.
std::string SafetensorsBytes(const std::string& header, const std::string& data) {
  std::string blob(8, '\0');
  const uint64_t hl = header.size();
  std::memcpy(blob.data(), &hl, 8);
  return blob + header + data;
}

// Opens `bytes` both ways (as a file and from memory): both must give a short
// InvalidArgument naming the source, with no LibTorch backtrace.
void Safetensors::ExpectRejected(const std::string& bytes, const std::string& what) {
  SCOPED_TRACE(what.substr(0, 200));
  const std::string p = TmpPath("hostile.safetensors");
  ASSERT_TRUE(WriteFileAtomically(p, bytes).ok());
  for (int from_bytes = 0; from_bytes < 2; ++from_bytes) {
    const std::string name = from_bytes ? "prompt artifact" : p;
    auto f = from_bytes ? SafetensorsFile::FromBytes(bytes, name) : SafetensorsFile::Open(p);
    ASSERT_FALSE(f.ok()) << (from_bytes ? "FromBytes" : "Open") << " accepted it";
    const absl::Status& s = f.status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_LT(s.message().size(), 400u) << s.message().substr(0, 400);
    EXPECT_NE(s.message().find(name), std::string::npos) << s;
    EXPECT_EQ(s.message().find("Exception raised from"), std::string::npos) << s;
    EXPECT_EQ(s.message().find(std::string(200, 'x')), std::string::npos) << "input echoed in full";
  }
}

std::string OneTensor(const std::string& dtype, const std::string& shape,
                      const std::string& offsets) {
  return absl::StrCat(R"({"t":{"dtype":)", dtype, R"(,"shape":)", shape, R"(,"data_offsets":)",
                      offsets, "}}");
}

// Shapes whose byte size overflows 64 bits used to wrap to 0, match empty data offsets
// and reach torch::empty in Get() (a c10::Error with a backtrace).
TEST_F(Safetensors, RejectsOverflowingShapes) {
  const std::string data(16, '\0');
  const std::string cases[][3] = {
      {R"("F32")", "[4611686018427387904, 4]", "[0, 0]"},  // 2**62 * 4 elements
      {R"("F32")", "[4611686018427387904, 2]", "[0, 0]"},  // 2**63 elements, 2**65 bytes
      {R"("U8")", "[4294967296, 4294967296]", "[0, 0]"},   // 2**64 elements
      {R"("F32")", "[3, 2305843009213693952]", "[0, 0]"},  // count fits, bytes do not
      {R"("F32")", "[0, 4611686018427387904, 4611686018427387904]", "[0, 0]"},  // no strides
      {R"("F32")", "[9223372036854775808]", "[0, 0]"},                          // not an int64
      {R"("F64")", "[9223372036854775807]", "[0, 16]"},
      {R"("F32")", "[-4]", "[0, 16]"},
      {R"("F32")", "[4611686018427387904, 4]", "[0, 16]"},
  };
  for (const auto& c : cases) {
    const std::string h = OneTensor(c[0], c[1], c[2]);
    ExpectRejected(SafetensorsBytes(h, data), h);
  }
}

TEST_F(Safetensors, RejectsInconsistentOffsets) {
  const std::string data(16, '\0');
  const std::string cases[][3] = {
      {R"("F32")", "[4]", "[0, 12]"},                    // fewer bytes than shape x dtype
      {R"("F32")", "[2]", "[0, 16]"},                    // more
      {R"("F32")", "[4]", "[8, 24]"},                    // past the end of the data
      {R"("F32")", "[0]", "[8, 0]"},                     // end before begin
      {R"("F32")", "[4]", "[-16, 0]"},                   // negative
      {R"("F32")", "[4]", "[0, 18446744073709551615]"},  // huge
      {R"("F32")", "[4]", "[18446744073709551600, 0]"},  //
      {R"("F32")", "[4]", "[0]"},                        // one offset
      {R"("F32")", "[4]", "[0, 8, 16]"},                 // three
      {R"("F32")", "[4]", R"(["0", "16"])"},             // strings
      {R"("F32")", "[4]", "[0.0, 16.0]"},                // floats
      {R"("F32")", "[4]", "null"},                       //
  };
  for (const auto& c : cases) {
    const std::string h = OneTensor(c[0], c[1], c[2]);
    ExpectRejected(SafetensorsBytes(h, data), h);
  }
}

TEST_F(Safetensors, RejectsMalformedEntries) {
  const std::string data(16, '\0');
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  const std::string headers[] = {
      OneTensor(R"("F128")", "[4]", "[0, 16]"),
      OneTensor("4", "[4]", "[0, 16]"),
      OneTensor(R"("F32")", "[2.5]", "[0, 8]"),  // must not be read as 2
      OneTensor(R"("F32")", R"(["4"])", "[0, 16]"),
      OneTensor(R"("F32")", "4", "[0, 16]"),
      OneTensor(R"("F32")", "[[4]]", "[0, 16]"),
      OneTensor(R"("F32")", "[true]", "[0, 16]"),
      R"({"t":{"shape":[4],"data_offsets":[0,16]}})",
      R"({"t":{"dtype":"F32","data_offsets":[0,16]}})",
      R"({"t":{"dtype":"F32","shape":[4]}})",
      R"({"t":5})",
      R"({"t":null})",
      absl::StrCat(R"({"t":)", deep, "}"),
      OneTensor(R"("F32")", deep, "[0, 16]"),
      deep,
      "[]",
      "",
      "{",
      R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}} trailing)",
  };
  for (const std::string& h : headers) ExpectRejected(SafetensorsBytes(h, data), h);
}

// Names, dtypes and broken JSON tokens from the file are quoted and cut in messages.
TEST_F(Safetensors, ErrorMessagesAreBounded) {
  const std::string big(16000, 'x');
  const std::string data(16, '\0');
  const std::string headers[] = {
      absl::StrCat(R"({")", big, R"(":{"dtype":"F128","shape":[4],"data_offsets":[0,16]}})"),
      absl::StrCat(R"({")", big, R"(":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}})"),
      absl::StrCat(R"({")", big, R"(":{"dtype":"F32","shape":[4],"data_offsets":[0,99]}})"),
      absl::StrCat(R"({")", big, R"(":{"dtype":"F32","shape":[-1],"data_offsets":[0,16]}})"),
      absl::StrCat(R"({")", big, R"(":{"dtype":"F32","shape":"x","data_offsets":[0,16]}})"),
      absl::StrCat(R"({")", big, R"(":7})"),
      OneTensor(absl::StrCat(R"(")", big, R"(")"), "[4]", "[0, 16]"),
      absl::StrCat(R"({"t":")", big),       // unterminated string
      absl::StrCat(R"({"t":)", big, "}"),   // invalid literal
      absl::StrCat(R"({"t":1)", big, "}"),  // invalid number
  };
  for (const std::string& h : headers) ExpectRejected(SafetensorsBytes(h, data), h);
}

TEST_F(Safetensors, RejectsBadHeaderLengths) {
  const std::string h = OneTensor(R"("F32")", "[4]", "[0, 16]");
  const std::string good = SafetensorsBytes(h, std::string(16, '\0'));
  ASSERT_TRUE(SafetensorsFile::FromBytes(good, "good").ok());
  for (uint64_t len : {uint64_t{1000}, uint64_t{1} << 32, uint64_t{1} << 63, ~uint64_t{0},
                       uint64_t{good.size() - 7}}) {
    std::string bad = good;
    std::memcpy(bad.data(), &len, 8);
    ExpectRejected(bad, absl::StrCat("header length ", len));
  }
  ExpectRejected(good.substr(0, 7), "7 bytes");
  ExpectRejected("", "empty");
  ExpectRejected(good.substr(0, good.size() - 1), "truncated data");

  // A header length over the 100 MiB cap is refused before anything is parsed, even when
  // the file is that large (a sparse file).
  const std::string p = TmpPath("sparse.safetensors");
  const uint64_t len = (uint64_t{100} << 20) + 1;
  std::string prefix(8, '\0');
  std::memcpy(prefix.data(), &len, 8);
  ASSERT_TRUE(WriteFileAtomically(p, prefix).ok());
  ASSERT_EQ(::truncate(p.c_str(), static_cast<off_t>(len + 64)), 0);
  auto f = SafetensorsFile::Open(p);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
  EXPECT_NE(f.status().message().find("limit"), std::string::npos) << f.status();
  ::unlink(p.c_str());
}

TEST_F(Safetensors, RefusesNonRegularFiles) {
  const std::string fifo = TmpPath("fifo.safetensors");
  ::unlink(fifo.c_str());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  auto result =
      std::async(std::launch::async, [&] { return SafetensorsFile::Open(fifo).status(); });
  if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "opening a FIFO blocked";
    int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);  // release the blocked reader
    if (w >= 0) ::close(w);
  }
  absl::Status s = result.get();
  ::unlink(fifo.c_str());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("is not a regular file"), std::string::npos) << s;

  const std::string dir = TmpPath("dir.safetensors");
  ::mkdir(dir.c_str(), 0700);
  s = SafetensorsFile::Open(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("is not a regular file"), std::string::npos) << s;
  EXPECT_EQ(SafetensorsFile::Open(TmpPath("missing.safetensors")).status().code(),
            absl::StatusCode::kNotFound);
}

// Valid edge cases still load: empty tensors, scalars, no tensors, unaligned data.
TEST_F(Safetensors, AcceptsEdgeCases) {
  const std::string h =
      R"({"__metadata__":{"k":"v","n":3},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},)"
      R"("s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
      R"("u":{"dtype":"F32","shape":[1],"data_offsets":[9,13]}})";
  std::string data(13, '\0');
  const int64_t seven = 7;
  std::memcpy(data.data(), &seven, 8);
  const float f = 2.5f;
  std::memcpy(data.data() + 9, &f, 4);
  auto file = SafetensorsFile::FromBytes(SafetensorsBytes(h, data), "edge");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().size(), 1u);
  EXPECT_EQ((*file)->Get("e")->sizes().vec(), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ((*file)->Get("s")->item<int64_t>(), 7);
  std::shared_ptr<const SafetensorsFile> shared = std::move(*file);
  auto u = SafetensorsFile::MapTensor(shared, "u");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->item<float>(), 2.5f);
  EXPECT_EQ(SafetensorsFile::MapTensor(shared, "nope").status().code(),
            absl::StatusCode::kNotFound);

  auto empty = SafetensorsFile::FromBytes(SafetensorsBytes("{}", ""), "empty");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE((*empty)->tensors().empty());
}

// The streamed writer produces WriteSafetensors' bytes, whatever the pieces, and
// nothing at all unless exactly the declared bytes came.
TEST_F(Safetensors, StreamedWriterMatchesWriteSafetensors) {
  torch::Tensor f = torch::randn({5, 3}).to(torch::kFloat16);
  torch::Tensor idx = torch::arange(5, torch::kLong);
  const std::string want = SerializeSafetensors({{"index", idx}, {"features", f}}, {{"k", "v"}});
  const std::string p = TmpPath("streamed.safetensors");
  auto w = SafetensorsWriter::Create(
      p, {{"index", torch::kLong, {5}}, {"features", torch::kFloat16, {5, 3}}}, {{"k", "v"}});
  ASSERT_TRUE(w.ok()) << w.status();
  const char* fb = static_cast<const char*>(f.data_ptr());
  ASSERT_TRUE((*w)->Append(fb, 7).ok());  // pieces that split values
  ASSERT_TRUE((*w)->Append(fb + 7, 23).ok());
  ASSERT_TRUE((*w)->Append(idx.data_ptr(), 40).ok());
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_EQ(*ReadFile(p), want);

  const std::string q = TmpPath("short.safetensors");
  {
    auto s = SafetensorsWriter::Create(q, {{"a", torch::kFloat32, {4}}});
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->Append(fb, 8).ok());
    EXPECT_EQ((*s)->Append(fb, 9).code(), absl::StatusCode::kInternal);  // past the end
    EXPECT_EQ((*s)->Commit().code(), absl::StatusCode::kInternal);       // 8 of 16 bytes
  }
  EXPECT_FALSE(std::filesystem::exists(q));
  for (const auto& e : std::filesystem::directory_iterator(TmpPath(""))) {
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  }
}

}  // namespace
}  // namespace updp::model
