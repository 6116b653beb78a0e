// soak_selection HOST:PORT JOB_ID OUT.csv|OUT.json: writes the picks of an existing,
// finished SELECT job with the same code (client::WriteSelection) as
// `updpctl select --out`, so that the kill -9 soak test can compare the selection of a
// job it interrupted and resumed with the one of an uninterrupted run byte for byte.
// (`updpctl select --out` only writes the picks of the job it starts itself.)
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <iostream>
#include <string>

#include "client/client_lib.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: soak_selection HOST:PORT JOB_ID OUT.csv|OUT.json\n";
    return 2;
  }
  auto channel = grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::cerr << "soak_selection: cannot connect to " << argv[1] << "\n";
    return 1;
  }
  auto stub = updp::v1::Updp::NewStub(channel);
  int64_t n = 0;
  grpc::Status s = updp::client::WriteSelection(stub.get(), argv[2], argv[3], &n);
  if (!s.ok()) {
    std::cerr << "soak_selection: " << s.error_code() << ": " << s.error_message() << "\n";
    return 1;
  }
  std::cout << "wrote " << n << " picks of " << argv[2] << " to " << argv[3] << "\n";
  return 0;
}
