// .npy reading under hostile input: every malformed file is an InvalidArgument with a
// short message, never a crash, a hang, an exception or a backtrace.
#include "server/model/npy.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <future>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/util/atomic_file.h"
#include "tests/model/scratch_dir.h"

namespace updp::model {
namespace {

// A .npy file: magic, version `major`.0, the header text `dict` padded with spaces and a
// newline to `min_header` bytes (at least) and to a multiple of 64, then `data`.
std::string NpyBytes(const std::string& dict, int major = 1, size_t min_header = 0,
                     const std::string& data = "") {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  while (header.size() + 1 < min_header || (prefix + header.size() + 1) % 64 != 0) {
    header.push_back(' ');
  }
  header.push_back('\n');
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  const uint32_t len = static_cast<uint32_t>(header.size());
  for (size_t i = 0; i < prefix - 8; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  return out + header + data;
}

// What every rejection must look like: InvalidArgument, the file named, a few hundred
// bytes at most, no LibTorch backtrace.
void ExpectShortInvalidArgument(const absl::Status& s, const std::string& path) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_LT(s.message().size(), 400u) << s.message().substr(0, 400);
  EXPECT_NE(s.message().find(path), std::string::npos) << s;
  EXPECT_EQ(s.message().find("Exception raised from"), std::string::npos) << s;
}

class NpyHeader : public ScratchDirTest {
 protected:
  // Writes `bytes` to a file `name` in the test's directory; returns its path.
  std::string WriteTmp(const std::string& name, const std::string& bytes) {
    const std::string p = TmpPath(name);
    EXPECT_TRUE(WriteFileAtomically(p, bytes).ok());
    return p;
  }
};
class Npy : public NpyHeader {};

TEST_F(NpyHeader, ParsesDictVariants) {
  struct Case {
    std::string dict;
    std::string descr;
    std::vector<int64_t> shape;
  };
  const Case cases[] = {
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", "<f4", {2, 3}},
      {"{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}", "<f4", {2, 3}},
      {"{\"descr\": \"<f2\", \"fortran_order\": False, \"shape\": (5,)}", "<f2", {5}},
      {"{  'descr'  :'<i8'  ,'fortran_order':False,'shape':(  5 , )  ,  }", "<i8", {5}},
      {"{'descr': '<i4', 'fortran_order': False, 'shape': (), }", "<i4", {}},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3,), }", "<f4", {1, 2, 3}},
      {"{'descr': '<f4', 'shape': (0, 7), }", "<f4", {0, 7}},
  };
  for (const Case& c : cases) {
    int64_t numel = 1;
    for (int64_t d : c.shape) numel *= d;
    const size_t esize = c.descr == "<f2" ? 2 : c.descr == "<i8" ? 8 : 4;
    const std::string p =
        WriteTmp("variant.npy", NpyBytes(c.dict, 1, 0, std::string(numel * esize, 'x')));
    auto h = ReadNpyHeader(p);
    ASSERT_TRUE(h.ok()) << c.dict << ": " << h.status();
    EXPECT_EQ(h->descr, c.descr) << c.dict;
    EXPECT_EQ(h->shape, c.shape) << c.dict;
    EXPECT_FALSE(h->fortran_order);
    EXPECT_EQ(h->data_offset % 64, 0u);
    auto t = MapNpy(p);
    ASSERT_TRUE(t.ok()) << c.dict << ": " << t.status();
    EXPECT_EQ(t->sizes().vec(), c.shape);
  }
}

// The crash found on the running server: long runs of legal whitespace inside the header
// dict drove the std::regex matcher (recursive in libstdc++) through the stack.
TEST_F(NpyHeader, LongHeadersParseWithoutCrashing) {
  const std::string data(6 * 4, 'x');
  // Format 1.0, padded with spaces to almost the 65535-byte limit.
  std::string p = WriteTmp(
      "pad1.npy",
      NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 1, 60000, data));
  auto h = ReadNpyHeader(p);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_GT(h->data_offset, 60000u);

  // Format 2.0 with 200 KB of spaces inside the dict: between key and value, and inside
  // the shape tuple.
  const std::string wide(200000, ' ');
  p = WriteTmp("pad2.npy", NpyBytes(absl::StrCat("{'descr':", wide, "'<f4', 'fortran_order': ",
                                                 "False, 'shape':", wide, "(2,", wide, "3), }"),
                                    2, 0, data));
  h = ReadNpyHeader(p);
  ASSERT_TRUE(h.ok()) << h.status().message().substr(0, 400);
  EXPECT_EQ(h->descr, "<f4");
  EXPECT_EQ(h->shape, (std::vector<int64_t>{2, 3}));
  auto t = MapNpy(p);
  ASSERT_TRUE(t.ok()) << t.status().message().substr(0, 400);
  EXPECT_EQ(t->sizes().vec(), (std::vector<int64_t>{2, 3}));

  // Format 3.0 with a 40 KB descr string (an error, not a crash).
  p = WriteTmp("pad3.npy", NpyBytes(absl::StrCat("{'descr': '<", std::string(40000, 'x'),
                                                 "', 'fortran_order': False, 'shape': (2, 3), }"),
                                    3, 0, data));
  ExpectShortInvalidArgument(ReadNpyHeader(p).status(), p);
}

TEST_F(NpyHeader, RejectsHeadersOverOneMiB) {
  const std::string p = WriteTmp(
      "huge_header.npy", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 2,
                                  (1 << 20) + 64, std::string(8, 'x')));
  auto h = ReadNpyHeader(p);
  ExpectShortInvalidArgument(h.status(), p);
  EXPECT_NE(h.status().message().find("header"), std::string::npos) << h.status();
  ExpectShortInvalidArgument(MapNpy(p).status(), p);
}

// Runs `read` on a FIFO; a reader that blocks in open() is released after 5 s (by opening
// the write end) so that the test fails instead of hanging.
absl::Status ReadFifo(const std::string& path,
                      std::function<absl::Status(const std::string&)> read) {
  ::unlink(path.c_str());
  EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0) << std::strerror(errno);
  auto result = std::async(std::launch::async, read, path);
  if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << path << ": reading a FIFO blocked";
    int w = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) ::close(w);
  }
  absl::Status s = result.get();
  ::unlink(path.c_str());
  return s;
}

TEST_F(NpyHeader, RefusesNonRegularFiles) {
  const std::string fifo = TmpPath("fifo.npy");
  for (auto read : {+[](const std::string& p) { return ReadNpyHeader(p).status(); },
                    +[](const std::string& p) { return MapNpy(p).status(); }}) {
    absl::Status s = ReadFifo(fifo, read);
    ExpectShortInvalidArgument(s, fifo);
    EXPECT_NE(s.message().find("is not a regular file"), std::string::npos) << s;
  }
  const std::string dir = TmpPath("dir.npy");
  ::mkdir(dir.c_str(), 0700);
  absl::Status s = ReadNpyHeader(dir).status();
  ExpectShortInvalidArgument(s, dir);
  EXPECT_NE(s.message().find("is not a regular file"), std::string::npos) << s;

  EXPECT_EQ(ReadNpyHeader(TmpPath("does-not-exist.npy")).status().code(),
            absl::StatusCode::kNotFound);
}

// Shapes whose element count or byte size overflows 64 bits used to wrap to a small
// number, pass the size check and reach LibTorch (INTERNAL with a C++ backtrace).
TEST_F(NpyHeader, RejectsOverflowingShapes) {
  const std::string shapes[] = {
      "(4611686018427387904, 8)",                       // 2**62 * 8 elements
      "(8, 4611686018427387904)",                       //
      "(3, 2305843009213693952)",                       // the count fits, the byte size does not
      "(1099511627776, 1073741824)",                    // 2**40 * 2**30
      "(0, 4611686018427387904, 4611686018427387904)",  // empty, but no valid strides
      "(99999999999999999999,)",                        // not an int64
      "(9223372036854775807, 1)",                       // fits int64 but not the file
      "(1000000, 1000)",                                // plainly larger than the file
  };
  for (const std::string& shape : shapes) {
    const std::string p = WriteTmp(
        "overflow.npy",
        NpyBytes(absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': ", shape, ", }"),
                 1, 0, std::string(64, 'x')));
    SCOPED_TRACE(shape);
    ExpectShortInvalidArgument(ReadNpyHeader(p).status(), p);
    ExpectShortInvalidArgument(MapNpy(p).status(), p);
  }
}

// A huge value from the file is quoted and cut, never echoed in full.
TEST_F(NpyHeader, ErrorMessagesAreBounded) {
  const std::string big(16000, 'x');
  const std::string dicts[] = {
      absl::StrCat("{'descr': '<", big, "', 'fortran_order': False, 'shape': (2,), }"),
      absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", big, ",), }"),
      absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), '", big, "': 1}"),
      absl::StrCat("{'descr': '<f4', 'fortran_order': ", big, ", 'shape': (2,), }"),
      absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", big),
      absl::StrCat("{'descr': '<f4", big),
  };
  for (const std::string& dict : dicts) {
    const std::string p = WriteTmp("bounded.npy", NpyBytes(dict, 2, 0, std::string(8, 'x')));
    SCOPED_TRACE(dict.substr(0, 60));
    auto h = ReadNpyHeader(p);
    ExpectShortInvalidArgument(h.status(), p);
    EXPECT_EQ(h.status().message().find(std::string(200, 'x')), std::string::npos);
  }
}

TEST_F(NpyHeader, RejectsMalformedHeaders) {
  const std::string dicts[] = {
      "",
      "[]",
      "{",
      "{}",
      "{'fortran_order': False, 'shape': (2,), }",   // no descr
      "{'descr': '<f4', 'fortran_order': False, }",  // no shape
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': [2], }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (,), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,), }",
      "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }",  // unsupported
      "{'descr': '<f4', 'fortran_order': Truely, 'shape': (2,), }",
      "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }",
      "{'descr': '<f4', 'descr': '<f4', 'shape': (2,), }",  // duplicate key
      "{'descr': '<f4', 'extra': 1, 'shape': (2,), }",      // unknown key
      "{'descr': '<f4' 'shape': (2,)}",                     // missing comma
      "{'descr': '<f4\", 'shape': (2,)}",                   // mismatched quotes
      "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } junk",
      "{descr: '<f4', 'fortran_order': False, 'shape': (2,), }",
      absl::StrCat(
          "{'descr': '<f4', 'fortran_order': False, 'shape': (",
          [] {
            std::string s;
            for (int i = 0; i < 100; ++i) s += "1,";
            return s;
          }(),
          "), }"),  // more dimensions than any tensor has
  };
  for (const std::string& dict : dicts) {
    const std::string p = WriteTmp("malformed.npy", NpyBytes(dict, 1, 0, std::string(64, 'x')));
    SCOPED_TRACE(dict);
    ExpectShortInvalidArgument(ReadNpyHeader(p).status(), p);
    ExpectShortInvalidArgument(MapNpy(p).status(), p);
  }
}

TEST_F(NpyHeader, RejectsBadPrefixes) {
  const std::string good = NpyBytes("{'descr': '<f4', 'shape': (2,), }", 1, 0, std::string(8, 'x'));
  std::string v9 = good;
  v9[6] = 9;
  std::string long_len = good;  // header length beyond the end of the file
  long_len[8] = static_cast<char>(0xff);
  long_len[9] = static_cast<char>(0xff);
  std::string v2_long = NpyBytes("{'descr': '<f4', 'shape': (2,), }", 2, 0, std::string(8, 'x'));
  v2_long[11] = static_cast<char>(0x7f);
  const std::string blobs[] = {"",       "\x93NUMPY", "NOTNUMPY\x01\x00\x10\x00", v9,
                               long_len, v2_long,     good.substr(0, 30)};
  for (const std::string& b : blobs) {
    const std::string p = WriteTmp("prefix.npy", b);
    ExpectShortInvalidArgument(ReadNpyHeader(p).status(), p);
    ExpectShortInvalidArgument(MapNpy(p).status(), p);
  }
}

// A header whose length leaves the data misaligned for its dtype is copied, not mapped.
TEST_F(Npy, MapsMisalignedData) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n";
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes.push_back(static_cast<char>(dict.size() + 1));  // data offset not a multiple of 4
  bytes.push_back(0);
  bytes += dict + " ";
  const float v[3] = {1.5f, -2.0f, 3.25f};
  bytes.append(reinterpret_cast<const char*>(v), sizeof(v));
  const std::string p = WriteTmp("misaligned.npy", bytes);
  auto h = ReadNpyHeader(p);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_NE(h->data_offset % 4, 0u);
  auto t = MapNpy(p);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(torch::equal(*t, torch::tensor({1.5f, -2.0f, 3.25f})));
}

TEST_F(Npy, WriteReadRoundTripAllDtypes) {
  for (const torch::Tensor& a :
       {torch::randn({4, 5}), torch::randn({3}).to(torch::kFloat16),
        torch::randn({2, 3}, torch::kFloat64), torch::arange(6, torch::kLong).reshape({2, 3}),
        torch::arange(4, torch::kInt), torch::zeros({0, 8})}) {
    const std::string p = TmpPath("rt.npy");
    ASSERT_TRUE(WriteNpy(p, a).ok());
    auto h = ReadNpyHeader(p);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->shape, a.sizes().vec());
    auto m = MapNpy(p);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_TRUE(torch::equal(*m, a));
  }
}

TEST_F(Npy, ReaderReadsRowBlocks) {
  const std::string p = TmpPath("rows.npy");
  torch::Tensor a = torch::randn({9, 5}, torch::kFloat64);
  ASSERT_TRUE(WriteNpy(p, a).ok());
  auto r = NpyReader::Open(p);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->dtype(), torch::kFloat64);
  EXPECT_EQ((*r)->row_bytes(), 5u * 8);
  torch::Tensor rows = torch::empty({4, 5}, torch::kFloat64);
  ASSERT_TRUE((*r)->ReadRows(3, 4, rows.data_ptr()).ok());
  EXPECT_TRUE(torch::equal(rows, a.narrow(0, 3, 4)));
  EXPECT_EQ((*r)->ReadRows(7, 3, rows.data_ptr()).code(), absl::StatusCode::kOutOfRange);
  // Cut short after it was opened: an error, never a crash or stale bytes.
  auto bytes = *ReadFile(p);
  ASSERT_EQ(::truncate(p.c_str(), static_cast<off_t>(bytes.size() - 8 * 10)), 0);
  EXPECT_EQ((*r)->ReadRows(5, 4, rows.data_ptr()).code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE((*r)->ReadRows(0, 2, rows.data_ptr()).ok());
}

// Row ranges and row sizes from the file are overflow-checked too: rows [1, 1 + INT64_MAX)
// used to wrap the range check, and a row-less array of huge rows a zero row size.
TEST_F(Npy, ReaderRejectsOverflowingRowsAndRanges) {
  const std::string p = TmpPath("rows.npy");
  ASSERT_TRUE(WriteNpy(p, torch::zeros({3, 2})).ok());
  auto r = NpyReader::Open(p);
  ASSERT_TRUE(r.ok()) << r.status();
  float buf[6];
  EXPECT_EQ((*r)->ReadRows(1, INT64_MAX, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*r)->ReadRows(INT64_MAX, 1, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*r)->ReadRows(4, 0, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE((*r)->ReadRows(3, 0, buf).ok());
  for (const char* shape : {"(0, 2305843009213693952)", "(0, 4294967296, 4294967296)"}) {
    SCOPED_TRACE(shape);
    const std::string q = WriteTmp(
        "huge_rows.npy",
        NpyBytes(absl::StrCat("{'descr': '<f8', 'fortran_order': False, 'shape': ", shape, ", }")));
    ExpectShortInvalidArgument(NpyReader::Open(q).status(), q);
  }
}

TEST_F(Npy, RoundTripAndMap) {
  std::string p = TmpPath("x.npy");
  torch::Tensor a = torch::randn({7, 3}).to(torch::kFloat16);
  ASSERT_TRUE(WriteNpy(p, a).ok());
  auto m = MapNpy(p);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(torch::equal(*m, a));
}

TEST_F(Npy, RejectsTruncatedAndWrongDtype) {
  std::string p = TmpPath("t.npy");
  ASSERT_TRUE(WriteNpy(p, torch::randn({10, 4})).ok());
  auto bytes = *ReadFile(p);
  ASSERT_TRUE(WriteFileAtomically(p, bytes.substr(0, bytes.size() - 9)).ok());
  auto h = ReadNpyHeader(p);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(h.status().message().find("truncated"), std::string::npos);

  std::string q = TmpPath("u8.npy");
  std::string hdr = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }";
  while ((10 + hdr.size() + 1) % 64) hdr += ' ';
  hdr += '\n';
  std::string blob = std::string("\x93NUMPY\x01\x00", 8);
  blob.push_back(static_cast<char>(hdr.size()));
  blob.push_back(0);
  blob += hdr + "abcd";
  ASSERT_TRUE(WriteFileAtomically(q, blob).ok());
  h = ReadNpyHeader(q);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(h.status().message().find("dtype"), std::string::npos);
}

}  // namespace
}  // namespace updp::model
