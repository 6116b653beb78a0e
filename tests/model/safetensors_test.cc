#include "server/model/safetensors.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "server/util/atomic_file.h"
#include "server/model/npy.h"

namespace updp::model {
namespace {

std::string TmpPath(const std::string& name) {
  return ::testing::TempDir() + "/" + name;
}

TEST(Safetensors, RoundTripAllDtypes) {
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

TEST(Safetensors, RejectsBadHeaders) {
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

TEST(Npy, RoundTripAndMap) {
  std::string p = TmpPath("x.npy");
  torch::Tensor a = torch::randn({7, 3}).to(torch::kFloat16);
  ASSERT_TRUE(WriteNpy(p, a).ok());
  auto m = MapNpy(p);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(torch::equal(*m, a));
}

TEST(Npy, RejectsTruncatedAndWrongDtype) {
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
