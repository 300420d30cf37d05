# The package version for find_package(augur <version> CONFIG): read from augur.h (which
# cbindgen generates from the crate version). 0.x releases are compatible only within one
# minor version; from 1.0 on, within one major version.
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../include/augur.h" _augur_defines
     REGEX "^#define AUGUR_VERSION_(MAJOR|MINOR|PATCH) [0-9]+")
foreach(_augur_part MAJOR MINOR PATCH)
  string(REGEX MATCH "AUGUR_VERSION_${_augur_part} ([0-9]+)" _augur_match "${_augur_defines}")
  set(_augur_${_augur_part} "${CMAKE_MATCH_1}")
endforeach()
set(PACKAGE_VERSION "${_augur_MAJOR}.${_augur_MINOR}.${_augur_PATCH}")

if(PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
elseif(NOT PACKAGE_FIND_VERSION_MAJOR STREQUAL "" AND
       NOT PACKAGE_FIND_VERSION_MAJOR STREQUAL _augur_MAJOR)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
elseif(_augur_MAJOR STREQUAL "0" AND NOT PACKAGE_FIND_VERSION_MINOR STREQUAL "" AND
       NOT PACKAGE_FIND_VERSION_MINOR STREQUAL _augur_MINOR)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_VERSION VERSION_EQUAL PACKAGE_FIND_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
unset(_augur_defines)
unset(_augur_match)
