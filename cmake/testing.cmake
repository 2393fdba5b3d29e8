# testing.cmake — how every ctest entry is declared: a label, a timeout,
# the plugin search path, and sanitizer reports turned into failures
# (criterion forks per test and does not fail a test that leaks).
set(EB_SANITIZER_FAIL_REGEX
    "ERROR: AddressSanitizer;ERROR: LeakSanitizer;runtime error:;WARNING: ThreadSanitizer;ThreadSanitizer: reported")

if(EB_WITH_CRITERION)
  pkg_check_modules(CRITERION REQUIRED IMPORTED_TARGET criterion)
endif()

# eb_register_test(NAME LABEL l... TIMEOUT s COMMAND... [WILL_FAIL] [ENV k=v...])
# LABEL takes one label or several (LABEL cli redis); an argument none of
# the keywords takes is an error, not silently dropped.
function(eb_register_test name)
  cmake_parse_arguments(T "WILL_FAIL" "TIMEOUT" "LABEL;COMMAND;ENV" ${ARGN})
  if(NOT T_LABEL OR NOT T_TIMEOUT)
    message(FATAL_ERROR "test ${name}: every test needs a LABEL and a TIMEOUT")
  endif()
  if(T_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "test ${name}: arguments no keyword takes: ${T_UNPARSED_ARGUMENTS}")
  endif()
  add_test(NAME ${name} COMMAND ${T_COMMAND})
  set_tests_properties(${name} PROPERTIES
    LABELS "${T_LABEL}"
    TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "EVENTBUS_PLUGIN_PATH=${EB_PLUGIN_BUILD_DIR};${T_ENV}")
  set_tests_properties(${name} PROPERTIES FAIL_REGULAR_EXPRESSION "${EB_SANITIZER_FAIL_REGEX}")
  if(T_WILL_FAIL)
    set_tests_properties(${name} PROPERTIES WILL_FAIL TRUE)
  endif()
endfunction()

# eb_add_criterion_test(NAME SOURCES... LABEL l TIMEOUT s [LIBS...])
# One executable of criterion tests, one ctest entry.
function(eb_add_criterion_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "LABEL;SOURCES;LIBS;ENV" ${ARGN})
  if(NOT EB_WITH_CRITERION)
    return()
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE eventbus PkgConfig::CRITERION Threads::Threads ${T_LIBS})
  eb_register_test(${name} LABEL ${T_LABEL} TIMEOUT ${T_TIMEOUT}
                   COMMAND ${name} --jobs=1 ENV ${T_ENV})
endfunction()

# eb_add_plain_test(NAME SOURCES... LABEL l TIMEOUT s [LIBS...] [ARGS...])
# A plain executable (for TSan, where criterion cannot run): exit 0 = pass.
function(eb_add_plain_test name)
  cmake_parse_arguments(T "WILL_FAIL" "TIMEOUT" "LABEL;SOURCES;LIBS;ARGS;ENV" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE eventbus Threads::Threads ${T_LIBS})
  if(T_WILL_FAIL)
    eb_register_test(${name} LABEL ${T_LABEL} TIMEOUT ${T_TIMEOUT}
                     COMMAND ${name} ${T_ARGS} WILL_FAIL ENV ${T_ENV})
  else()
    eb_register_test(${name} LABEL ${T_LABEL} TIMEOUT ${T_TIMEOUT}
                     COMMAND ${name} ${T_ARGS} ENV ${T_ENV})
  endif()
endfunction()
