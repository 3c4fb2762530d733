//! Shared test harness: free loopback ports, child processes that are always killed, and the paths of
//! the binaries and Python clients the tests drive.
