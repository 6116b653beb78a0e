# The Python client package (client/python/updp) laid out in BUILD/python: its sources
# copied, and updp/v1/updp_pb2.py + updp_pb2_grpc.py generated from the proto with
# Debian's protoc and grpc_python_plugin (protobuf-compiler-grpc; not grpcio-tools).
# protoc runs on proto/ as the root, so the generated code imports `updp.v1.updp_pb2`:
# a subpackage of the client package itself. `cmake --install` (component python)
# puts the package in PREFIX/${UPDP_PYTHON_INSTALL_DIR}.
find_program(GRPC_PYTHON_PLUGIN grpc_python_plugin REQUIRED)
set(UPDP_PY_OUT ${CMAKE_BINARY_DIR}/python)
set(UPDP_PYTHON_INSTALL_DIR "lib/python3/dist-packages"
    CACHE STRING "where cmake --install puts the updp Python package, under the prefix")

set(updp_py_files)
foreach(f __init__.py client.py exports.py progress.py)
  add_custom_command(
    OUTPUT ${UPDP_PY_OUT}/updp/${f}
    COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/client/python/updp/${f}
            ${UPDP_PY_OUT}/updp/${f}
    DEPENDS ${CMAKE_SOURCE_DIR}/client/python/updp/${f})
  list(APPEND updp_py_files ${UPDP_PY_OUT}/updp/${f})
endforeach()
set(updp_py_gen ${UPDP_PY_OUT}/updp/v1/__init__.py ${UPDP_PY_OUT}/updp/v1/updp_pb2.py
                ${UPDP_PY_OUT}/updp/v1/updp_pb2_grpc.py)
add_custom_command(
  OUTPUT ${updp_py_gen}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${UPDP_PY_OUT}/updp/v1
  COMMAND protobuf::protoc --proto_path=${CMAKE_SOURCE_DIR}/proto --python_out=${UPDP_PY_OUT}
          --grpc_out=${UPDP_PY_OUT} --plugin=protoc-gen-grpc=${GRPC_PYTHON_PLUGIN}
          ${CMAKE_SOURCE_DIR}/proto/updp/v1/updp.proto
  COMMAND ${CMAKE_COMMAND} -E touch ${UPDP_PY_OUT}/updp/v1/__init__.py
  DEPENDS ${CMAKE_SOURCE_DIR}/proto/updp/v1/updp.proto)
add_custom_target(updp_python ALL DEPENDS ${updp_py_files} ${updp_py_gen})

install(DIRECTORY ${UPDP_PY_OUT}/updp DESTINATION ${UPDP_PYTHON_INSTALL_DIR} COMPONENT python
        FILES_MATCHING PATTERN "*.py")
