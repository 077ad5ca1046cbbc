# CMake 3.25 has no WASI platform module.
set(WASI 1)
set(CMAKE_EXECUTABLE_SUFFIX ".wasm")
