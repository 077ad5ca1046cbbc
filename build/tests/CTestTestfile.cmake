# CMake generated Testfile for 
# Source directory: /work/main/tests
# Build directory: /work/main/build/tests
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test([=[conformance]=] "/work/main/build/tests/test_conformance")
set_tests_properties([=[conformance]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;13;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[gguf_malformed]=] "/work/main/build/tests/test_gguf_malformed")
set_tests_properties([=[gguf_malformed]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;15;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[types]=] "/work/main/build/tests/test_types")
set_tests_properties([=[types]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;17;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[sampler]=] "/work/main/build/tests/test_sampler")
set_tests_properties([=[sampler]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;19;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[tokenizer]=] "/work/main/build/tests/test_tokenizer")
set_tests_properties([=[tokenizer]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;21;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[cli]=] "bash" "/work/main/tests/cli_test.sh" "/work/main/build/ternlm" "/work/shared")
set_tests_properties([=[cli]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;23;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[kernels]=] "/work/main/build/tests/test_kernels")
set_tests_properties([=[kernels]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;30;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[conformance_scalar]=] "/work/main/build/tests/test_conformance" "file")
set_tests_properties([=[conformance_scalar]=] PROPERTIES  ENVIRONMENT "TERNLM_KERNELS=scalar" SKIP_RETURN_CODE "77" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;33;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[conformance_avx2]=] "/work/main/build/tests/test_conformance" "file")
set_tests_properties([=[conformance_avx2]=] PROPERTIES  ENVIRONMENT "TERNLM_KERNELS=avx2" SKIP_RETURN_CODE "77" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;33;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[conformance_avx512]=] "/work/main/build/tests/test_conformance" "file")
set_tests_properties([=[conformance_avx512]=] PROPERTIES  ENVIRONMENT "TERNLM_KERNELS=avx512" SKIP_RETURN_CODE "77" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;33;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[conformance_neon]=] "/work/main/build/tests/test_conformance" "file")
set_tests_properties([=[conformance_neon]=] PROPERTIES  ENVIRONMENT "TERNLM_KERNELS=neon" SKIP_RETURN_CODE "77" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;33;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[conformance_wasm128]=] "/work/main/build/tests/test_conformance" "file")
set_tests_properties([=[conformance_wasm128]=] PROPERTIES  ENVIRONMENT "TERNLM_KERNELS=wasm128" SKIP_RETURN_CODE "77" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;33;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[chat]=] "/work/main/build/tests/test_chat")
set_tests_properties([=[chat]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;37;add_test;/work/main/tests/CMakeLists.txt;0;")
