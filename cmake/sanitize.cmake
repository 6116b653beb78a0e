# Sanitizer builds (scripts/sanitize.sh): -DUPDP_SANITIZE=address,undefined or thread.
#
# The project's own targets are compiled with -fsanitize=<list>, except those named in
# UPDP_SANITIZE_SKIP: they keep the main build's exact compile line, so with ccache
# (CCACHE_BASEDIR at the source root) they are cache hits from build/ and cost no
# compile time. Every executable links the sanitizer runtime, so even skipped code runs
# on its allocator and interceptors (double free, bad free, leaks, memcpy overlap, and
# for ThreadSanitizer every mutex). Included at the end of the top-level CMakeLists.txt,
# once every target exists.
set(UPDP_SANITIZE "" CACHE STRING "sanitizers for the project's targets: address,undefined or thread")
set(UPDP_SANITIZE_SKIP "" CACHE STRING "targets left uninstrumented (still linked with the runtime)")

# All build-system targets of `dir` and the directories below it.
function(updp_collect_targets dir out_var)
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(sub ${subdirs})
    updp_collect_targets("${sub}" sub_targets)
    list(APPEND targets ${sub_targets})
  endforeach()
  set(${out_var} ${targets} PARENT_SCOPE)
endfunction()

if(UPDP_SANITIZE)
  if(NOT UPDP_SANITIZE MATCHES "^(address|undefined|address,undefined|undefined,address|thread)$")
    message(FATAL_ERROR "UPDP_SANITIZE=${UPDP_SANITIZE}: use address,undefined or thread")
  endif()
  set(updp_san_compile -fsanitize=${UPDP_SANITIZE} -fno-omit-frame-pointer)
  if(UPDP_SANITIZE MATCHES "undefined")
    # Every UBSan finding fails the test that hit it.
    list(APPEND updp_san_compile -fno-sanitize-recover=undefined)
  endif()
  updp_collect_targets("${CMAKE_SOURCE_DIR}" updp_all_targets)
  set(updp_instrumented)
  foreach(t ${updp_all_targets})
    get_target_property(type ${t} TYPE)
    if(NOT type MATCHES "^(EXECUTABLE|STATIC_LIBRARY|SHARED_LIBRARY|OBJECT_LIBRARY|MODULE_LIBRARY)$")
      continue()
    endif()
    if(NOT t IN_LIST UPDP_SANITIZE_SKIP)
      target_compile_options(${t} PRIVATE ${updp_san_compile})
      list(APPEND updp_instrumented ${t})
    endif()
    if(type MATCHES "^(EXECUTABLE|SHARED_LIBRARY|MODULE_LIBRARY)$")
      target_link_options(${t} PRIVATE -fsanitize=${UPDP_SANITIZE})
    endif()
  endforeach()
  foreach(t ${UPDP_SANITIZE_SKIP})
    if(NOT TARGET ${t})
      message(FATAL_ERROR "UPDP_SANITIZE_SKIP names ${t}, which is not a target")
    endif()
  endforeach()
  message(STATUS "updp: -fsanitize=${UPDP_SANITIZE} on ${updp_instrumented}")
  message(STATUS "updp: uninstrumented (runtime linked): ${UPDP_SANITIZE_SKIP}")
endif()
