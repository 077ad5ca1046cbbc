# The installable C library: libternlm.a and (native builds) libternlm.so beside it, ternlm.h, the CLI, a
# pkg-config file and a CMake package config, so `cmake --install build --prefix P` gives a tree that
#   cc app.c $(pkg-config --cflags --libs ternlm)      or      find_package(ternlm) + ternlm::ternlm
# builds against. Included from CMakeLists.txt after the ternlm_core and ternlm targets exist.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(TERNLM_SHARED_DEFAULT ON)
if(EMSCRIPTEN OR WASI OR TERNLM_CUDA OR TERNLM_FUZZ)
  set(TERNLM_SHARED_DEFAULT OFF) # no shared objects on wasm; the CUDA and fuzz builds do not need one
endif()
option(TERNLM_SHARED "Build the shared library libternlm.so beside the static one" ${TERNLM_SHARED_DEFAULT})

# The static library installs as libternlm.a (ternlm::ternlm_static); its header path works in both trees.
set_target_properties(ternlm_core PROPERTIES OUTPUT_NAME ternlm EXPORT_NAME ternlm_static)
set_property(TARGET ternlm_core PROPERTY INTERFACE_INCLUDE_DIRECTORIES
  $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/runtime/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
set(TERNLM_INSTALL_TARGETS ternlm_core)

if(TERNLM_SHARED)
  # The same sources compiled position-independent (the static library and the CLI keep their non-PIC code).
  add_library(ternlm_shared SHARED ${TERNLM_RUNTIME_SOURCES} ${TERNLM_SIMD_SOURCES})
  add_library(ternlm::ternlm ALIAS ternlm_shared)
  target_include_directories(ternlm_shared PRIVATE runtime PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/runtime/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_definitions(ternlm_shared PRIVATE $<TARGET_PROPERTY:ternlm_core,COMPILE_DEFINITIONS>)
  if(TARGET Threads::Threads)
    target_link_libraries(ternlm_shared PRIVATE Threads::Threads)
  endif()
  target_link_libraries(ternlm_shared PRIVATE m)
  # only the public API (ternlm_*) is exported; the internals stay private to the library
  target_link_options(ternlm_shared PRIVATE -Wl,--version-script=${CMAKE_CURRENT_SOURCE_DIR}/cmake/ternlm.map
                      -Wl,--no-undefined)
  set_target_properties(ternlm_shared PROPERTIES OUTPUT_NAME ternlm EXPORT_NAME ternlm
    VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
    LINK_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cmake/ternlm.map)
  list(APPEND TERNLM_INSTALL_TARGETS ternlm_shared)
endif()

install(TARGETS ${TERNLM_INSTALL_TARGETS} EXPORT ternlmTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ternlm RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES runtime/include/ternlm.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# pkg-config: prefix relative to the .pc file, so `cmake --install --prefix` anywhere gives a working file
file(RELATIVE_PATH TERNLM_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
string(REGEX REPLACE "/$" "" TERNLM_PC_TO_PREFIX "${TERNLM_PC_TO_PREFIX}")
set(TERNLM_PC_LIBS_PRIVATE "")
set(TERNLM_CONFIG_NEEDS_THREADS 0)
if(TARGET Threads::Threads)
  set(TERNLM_PC_LIBS_PRIVATE "-pthread")
  set(TERNLM_CONFIG_NEEDS_THREADS 1)
endif()
if(NOT WASI AND NOT EMSCRIPTEN)
  string(APPEND TERNLM_PC_LIBS_PRIVATE " -lm")
endif()
configure_file(cmake/ternlm.pc.in ${CMAKE_CURRENT_BINARY_DIR}/ternlm.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ternlm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# CMake package: ternlmConfig.cmake, its version file and the exported targets
set(TERNLM_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ternlm)
if(NOT TERNLM_CUDA)
  set(TERNLM_CUDA 0)
endif()
configure_package_config_file(cmake/ternlmConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/ternlmConfig.cmake
  INSTALL_DESTINATION ${TERNLM_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/ternlmConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(EXPORT ternlmTargets NAMESPACE ternlm:: DESTINATION ${TERNLM_CMAKE_DIR})
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ternlmConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/ternlmConfigVersion.cmake
  DESTINATION ${TERNLM_CMAKE_DIR})
