use super::*;

/// The `Cap*` and `NoNewPrivs` lines of the calling thread's status (capabilities are per thread).
fn thread_status(field: &str) -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(":\t"))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .to_string()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Each test drops on a thread of its own: the sets of the test harness's threads stay as they were.
fn on_own_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

#[test]
fn drops_everything_from_the_calling_thread() {
    on_own_thread(|| {
        let had = caps::read(None, CapSet::Permitted).unwrap();
        let dropped = drop_this_thread(&[]).unwrap();
        assert!(dropped.kept.is_empty());
        assert_eq!(dropped.dropped.len(), had.len());
        for field in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
            assert_eq!(thread_status(field), "0000000000000000", "{field}");
        }
        assert_eq!(thread_status("NoNewPrivs"), "1");
        if is_root() {
            assert!(dropped.bounding_cleared);
            assert_eq!(thread_status("CapBnd"), "0000000000000000");
        }
    });
}

#[test]
fn keeps_only_what_is_asked_and_was_there() {
    on_own_thread(|| {
        let keep = [Capability::CAP_NET_BIND_SERVICE];
        let dropped = drop_this_thread(&keep).unwrap();
        if is_root() {
            // CAP_NET_BIND_SERVICE is bit 10.
            assert_eq!(thread_status("CapEff"), "0000000000000400");
            assert_eq!(thread_status("CapPrm"), "0000000000000400");
            assert_eq!(thread_status("CapBnd"), "0000000000000400");
            assert_eq!(dropped.kept, keep);
        } else {
            assert!(dropped.kept.is_empty());
        }
        assert_eq!(thread_status("CapInh"), "0000000000000000");
        // A second drop on an already lowered thread is a no-op, not an error.
        let again = drop_this_thread(&[]).unwrap();
        assert!(again.kept.is_empty());
        assert_eq!(thread_status("CapEff"), "0000000000000000");
    });
}

#[test]
fn refuses_the_whole_process_while_other_threads_run() {
    // The test harness runs this on a thread of its own, next to its main thread.
    let err = drop_process(&[]).unwrap_err();
    assert!(
        matches!(err, PrivilegeError::OtherThreads(n) if n >= 2),
        "{err}"
    );
    assert_ne!(thread_status("NoNewPrivs"), "1");
}

#[test]
fn probes_run_without_capabilities_and_leave_the_caller_alone() {
    let before = thread_status("CapEff");
    let probe_saw = works_unprivileged(|| {
        caps::read(None, CapSet::Effective).is_ok_and(|e| e.is_empty())
            && thread_status("NoNewPrivs") == "1"
    })
    .unwrap();
    assert!(probe_saw);
    assert_eq!(thread_status("CapEff"), before);
}

#[test]
fn log_names_are_lowercase_lists() {
    let list = by_number([Capability::CAP_BPF, Capability::CAP_NET_ADMIN]);
    assert_eq!(names(&list), "cap_net_admin,cap_bpf");
    assert_eq!(names(&[]), "none");
}

/// A joined thread still listed for a few reads (as `/proc/self/task` does on a loaded machine) is
/// waited for; one that stays is still reported, so a real second thread is refused.
#[test]
fn a_thread_that_is_exiting_is_waited_for_a_running_one_is_not() {
    let mut reads = [2, 2, 2, 1].into_iter();
    assert_eq!(
        settle(|| reads.next().unwrap_or(1), Duration::from_secs(5)),
        1
    );
    let mut calls = 0;
    let stuck = settle(
        || {
            calls += 1;
            2
        },
        Duration::from_millis(20),
    );
    assert_eq!(stuck, 2);
    assert!(calls > 1, "re-read before giving up");
}
