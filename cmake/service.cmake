# The gRPC service: proto library, core (no gRPC), rpc layer, server and CLI.
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(SQLite3 REQUIRED)
find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)

set(PROTO_OUT ${CMAKE_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${PROTO_OUT})
# updp_generate_grpc(OUT_VAR proto...): C++ and gRPC sources for .proto files
# given relative to the source root.
function(updp_generate_grpc out_var)
  set(gen)
  foreach(proto ${ARGN})
    get_filename_component(dir ${proto} DIRECTORY)
    get_filename_component(stem ${proto} NAME_WE)
    set(files ${PROTO_OUT}/${dir}/${stem}.pb.cc ${PROTO_OUT}/${dir}/${stem}.pb.h
              ${PROTO_OUT}/${dir}/${stem}.grpc.pb.cc ${PROTO_OUT}/${dir}/${stem}.grpc.pb.h)
    add_custom_command(
      OUTPUT ${files}
      COMMAND protobuf::protoc
      ARGS --proto_path=${CMAKE_SOURCE_DIR} --cpp_out=${PROTO_OUT} --grpc_out=${PROTO_OUT}
           --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN} ${CMAKE_SOURCE_DIR}/${proto}
      DEPENDS ${CMAKE_SOURCE_DIR}/${proto})
    list(APPEND gen ${files})
  endforeach()
  set(${out_var} ${gen} PARENT_SCOPE)
endfunction()
updp_generate_grpc(PROTO_GEN proto/updp/v1/updp.proto proto/grpc/health/v1/health.proto)
add_library(updp_proto ${PROTO_GEN})
target_include_directories(updp_proto PUBLIC ${PROTO_OUT})
target_link_libraries(updp_proto PUBLIC gRPC::grpc++ protobuf::libprotobuf)

# Core: datasets, jobs, storage, metrics. No gRPC and no LibTorch anywhere below
# server/core (it compiles without their headers).
find_package(OpenSSL REQUIRED)
add_library(updp_core
  server/core/audit_log.cc
  server/core/auth.cc
  server/core/data_dir_lock.cc
  server/core/embeddings_upload.cc
  server/core/job_manager.cc
  server/core/job_params.cc
  server/core/metrics.cc
  server/core/names.cc
  server/core/paths.cc
  server/core/registration.cc
  server/core/registration_job.cc
  server/core/refresh_job.cc
  server/core/selection_report.cc
  server/core/server_core.cc
  server/core/store.cc
  server/core/work_pool.cc
)
target_include_directories(updp_core PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(updp_core PUBLIC updp_util updp_select_base absl::status absl::statusor absl::strings
                      nlohmann_json::nlohmann_json SQLite::SQLite3 prometheus-cpp::core
                      PkgConfig::HTTPLIB Threads::Threads absl::time
                      PRIVATE OpenSSL::Crypto)

# The model-backed engine: job bodies (EMBED, LEARN_PROMPT, SELECT), model loading,
# embeddings import, prompt checks. Registered into the core's job manager by the app.
add_library(updp_engine
  server/engine/attach_job.cc
  server/engine/duplicates_job.cc
  server/engine/learn_prompt_job.cc
  server/engine/model_engine.cc
  server/engine/select_job.cc
)
target_link_libraries(updp_engine PUBLIC updp_core updp_features)
target_precompile_headers(updp_engine PRIVATE <torch/torch.h>)

add_library(updp_rpc server/rpc/call_gate.cc server/rpc/convert.cc server/rpc/limits.cc
            server/rpc/service_impl.cc server/rpc/server.cc server/rpc/tls.cc
            server/rpc/upload_reactor.cc)
target_link_libraries(updp_rpc PUBLIC updp_core updp_proto gRPC::grpc++ gRPC::grpc++_reflection
                      PRIVATE OpenSSL::Crypto)

# The whole server wired together (main and the service tests).
add_library(updp_app server/app/app.cc)
target_link_libraries(updp_app PUBLIC updp_rpc updp_engine)

add_executable(updp-server server/main.cc)
target_link_libraries(updp-server PRIVATE updp_app absl::flags absl::flags_parse absl::flags_usage)

add_library(updp_client client/channel.cc client/client_lib.cc client/duplicates_out.cc client/labeled_list.cc
            client/report_fetch.cc client/report_html.cc client/tls_channel.cc)
target_include_directories(updp_client PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(updp_client PUBLIC updp_util updp_select_base updp_proto absl::str_format absl::status absl::statusor absl::strings
                      nlohmann_json::nlohmann_json)
add_executable(updpctl client/updpctl.cc)
target_link_libraries(updpctl PRIVATE updp_client)

# `cmake --install BUILD [--prefix DIR]`: the server, the CLI and the tools.
include(GNUInstallDirs)
install(TARGETS updp-server updpctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The Python client package (BUILD/python/updp).
include(${CMAKE_SOURCE_DIR}/cmake/python_client.cmake)
