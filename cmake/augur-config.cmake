# augur-config.cmake: CMake imported targets over the cargo-built augur C library.
#
#   find_package(augur CONFIG REQUIRED)   # configure with -Daugur_DIR=<augur checkout>/cmake
#   target_link_libraries(app PRIVATE augur::augur)          # static: libaugur.a
#   target_link_libraries(app PRIVATE augur::augur_shared)   # shared: libaugur.so
#
# Both targets carry the include directory (augur.h, augur.hpp). The static one also links
# what Rust's standard library needs (pthread, dl, m).
#
# Cache variables:
#   AUGUR_LIB_DIR      where cargo put the libraries; default <checkout>/target/release
#                      (cargo build --release -p augur-ffi). Use .../target/debug for a debug
#                      build.
#   AUGUR_INCLUDE_DIR  default <checkout>/include.
#
# Hand-written (the library is built by cargo, not by CMake); the version comes from
# augur-config-version.cmake, which reads it from augur.h.

get_filename_component(_augur_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(AUGUR_LIB_DIR "${_augur_root}/target/release" CACHE PATH
    "Directory holding libaugur.a and libaugur.so (cargo's target/<profile>)")
set(AUGUR_INCLUDE_DIR "${_augur_root}/include" CACHE PATH
    "Directory holding augur.h and augur.hpp")

set(_augur_static "${AUGUR_LIB_DIR}/${CMAKE_STATIC_LIBRARY_PREFIX}augur${CMAKE_STATIC_LIBRARY_SUFFIX}")
set(_augur_shared "${AUGUR_LIB_DIR}/${CMAKE_SHARED_LIBRARY_PREFIX}augur${CMAKE_SHARED_LIBRARY_SUFFIX}")

if(NOT EXISTS "${AUGUR_INCLUDE_DIR}/augur.h")
  set(augur_FOUND FALSE)
  set(augur_NOT_FOUND_MESSAGE "augur.h not found in AUGUR_INCLUDE_DIR (${AUGUR_INCLUDE_DIR})")
  return()
endif()
if(NOT EXISTS "${_augur_static}" AND NOT EXISTS "${_augur_shared}")
  set(augur_FOUND FALSE)
  set(augur_NOT_FOUND_MESSAGE
      "no libaugur in AUGUR_LIB_DIR (${AUGUR_LIB_DIR}): run `cargo build --release -p augur-ffi` "
      "in ${_augur_root}, or set AUGUR_LIB_DIR to the cargo target directory that has it")
  return()
endif()

if(EXISTS "${_augur_static}" AND NOT TARGET augur::augur)
  add_library(augur::augur STATIC IMPORTED)
  set_target_properties(augur::augur PROPERTIES
    IMPORTED_LOCATION "${_augur_static}"
    INTERFACE_INCLUDE_DIRECTORIES "${AUGUR_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "pthread;dl;m")
endif()

if(EXISTS "${_augur_shared}" AND NOT TARGET augur::augur_shared)
  add_library(augur::augur_shared SHARED IMPORTED)
  set_target_properties(augur::augur_shared PROPERTIES
    IMPORTED_LOCATION "${_augur_shared}"
    # cargo's cdylib has no SONAME: link it by name (-L dir -laugur), not by its path.
    IMPORTED_NO_SONAME TRUE
    INTERFACE_INCLUDE_DIRECTORIES "${AUGUR_INCLUDE_DIR}")
endif()

unset(_augur_root)
unset(_augur_static)
unset(_augur_shared)
