# tests/redis/faults.cmake — the Redis transport against a server that
# restarts, freezes (SIGSTOP) or loses a member to SIGKILL.
