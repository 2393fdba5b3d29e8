# valgrind.cmake — how a test runs under valgrind memcheck. Every valgrind
# test uses the same options, and the canary in tests/canary proves they
# turn a leak into a failure: definite and indirect leaks and memory errors
# exit 99, in child processes too.
include_guard(GLOBAL)

# eb_valgrind_command(OUT): the valgrind command line every valgrind test
# uses, for tests that wrap it in something else (a server address).
function(eb_valgrind_command out)
  find_program(EB_VALGRIND valgrind REQUIRED)
  set(${out}
      ${EB_VALGRIND}
      --error-exitcode=99
      --leak-check=full
      --errors-for-leak-kinds=definite,indirect
      --show-leak-kinds=definite,indirect
      --track-origins=no
      --trace-children=yes
      --child-silent-after-fork=no
      --suppressions=${CMAKE_CURRENT_FUNCTION_LIST_DIR}/../tests/valgrind.supp
      PARENT_SCOPE)
endfunction()

# eb_register_valgrind_test(NAME TARGET t LABEL l TIMEOUT s [ARGS...] [ENV...] [WILL_FAIL])
# Registers an existing executable target to run under valgrind. Valgrind
# cannot run sanitized code: in an EB_SANITIZE build nothing is registered.
function(eb_register_valgrind_test name)
  cmake_parse_arguments(T "WILL_FAIL" "TARGET;LABEL;TIMEOUT" "ARGS;ENV" ${ARGN})
  if(NOT EB_SANITIZE STREQUAL "")
    return()
  endif()
  eb_valgrind_command(valgrind)
  set(will_fail)
  if(T_WILL_FAIL)
    set(will_fail WILL_FAIL)
  endif()
  eb_register_test(${name} LABEL ${T_LABEL} TIMEOUT ${T_TIMEOUT}
                   COMMAND ${valgrind} $<TARGET_FILE:${T_TARGET}> ${T_ARGS}
                   ${will_fail} ENV ${T_ENV})
endfunction()

# eb_add_valgrind_test(NAME SOURCES... LABEL l TIMEOUT s [LIBS...] [ARGS...] [ENV...] [WILL_FAIL])
# A plain executable linked like eb_add_plain_test's, run under valgrind.
# In an EB_SANITIZE build neither the executable nor the test is made.
function(eb_add_valgrind_test name)
  cmake_parse_arguments(T "WILL_FAIL" "LABEL;TIMEOUT" "SOURCES;LIBS;ARGS;ENV" ${ARGN})
  if(NOT EB_SANITIZE STREQUAL "")
    return()
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE eventbus Threads::Threads ${T_LIBS})
  set(will_fail)
  if(T_WILL_FAIL)
    set(will_fail WILL_FAIL)
  endif()
  eb_register_valgrind_test(${name} TARGET ${name} LABEL ${T_LABEL} TIMEOUT ${T_TIMEOUT}
                            ARGS ${T_ARGS} ENV ${T_ENV} ${will_fail})
endfunction()
