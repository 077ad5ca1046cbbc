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
set_tests_properties([=[cli]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;22;add_test;/work/main/tests/CMakeLists.txt;0;")
