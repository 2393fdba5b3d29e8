# tests/redis/faults.cmake — the Redis transport against a server that
# restarts, freezes (SIGSTOP) or loses a member to SIGKILL.
if(NOT EB_WITH_CRITERION OR NOT TARGET eventbus-redis)
  return()
endif()

add_executable(redis_crash_child crash_child.c)
target_link_libraries(redis_crash_child PRIVATE eventbus)

# It stops, empties and freezes the server the other suites share: alone.
eb_add_redis_test(redis_faults 300)
if(TARGET redis_faults)
  target_compile_definitions(redis_faults PRIVATE
                             EB_REDIS_CRASH_CHILD_PATH="$<TARGET_FILE:redis_crash_child>")
  add_dependencies(redis_faults redis_crash_child eventbus-redis)
  set_tests_properties(redis_faults PROPERTIES RUN_SERIAL TRUE)
endif()

# Keyed group mode: members coming and going, a member killed (the child
# above, with keyed settings), bad partition counts, anonymous reads.
eb_add_redis_test(redis_keyed 180)
if(TARGET redis_keyed)
  target_compile_definitions(redis_keyed PRIVATE
                             EB_REDIS_CRASH_CHILD_PATH="$<TARGET_FILE:redis_crash_child>")
  add_dependencies(redis_keyed redis_crash_child eventbus-redis)
endif()
