//! The per-OS constant table and what this build exports.

use evmux_kqueue::consts::{Os, WakeMechanism};
use evmux_kqueue::translate::Filter;

#[test]
fn filter_numbers_per_system() {
    let table = [
        (Os::MacOs, -1, -2, -10),
        (Os::FreeBsd, -1, -2, -11),
        (Os::DragonFly, -1, -2, -9),
        (Os::NetBsd, 0, 1, 8),
        (Os::OpenBsd, -1, -2, -10),
    ];
    for (os, read, write, user) in table {
        assert_eq!(Filter::Read.raw(os), read, "{os:?}");
        assert_eq!(Filter::Write.raw(os), write, "{os:?}");
        assert_eq!(Filter::User.raw(os), user, "{os:?}");
    }
    assert_eq!(Os::ALL.len(), table.len());
}

#[test]
fn filter_numbers_round_trip_and_unknown_ones_are_refused() {
    for os in Os::ALL {
        for f in [Filter::Read, Filter::Write, Filter::User] {
            assert_eq!(Filter::from_raw(os, f.raw(os)), Some(f), "{os:?} {f:?}");
        }
        // EVFILT_VNODE (-4, or 3 on NetBSD) is none of ours.
        let vnode = if os == Os::NetBsd { 3 } else { -4 };
        assert_eq!(Filter::from_raw(os, vnode), None);
    }
    // The same number means different filters on different systems.
    assert_eq!(Filter::from_raw(Os::FreeBsd, -10), None); // EVFILT_LIO
    assert_eq!(Filter::from_raw(Os::MacOs, -10), Some(Filter::User));
    assert_eq!(Filter::from_raw(Os::NetBsd, 0), Some(Filter::Read));
}

#[test]
fn wake_mechanism_per_system() {
    for os in [Os::MacOs, Os::FreeBsd, Os::DragonFly] {
        assert_eq!(os.wake_mechanism(), WakeMechanism::User);
    }
    for os in [Os::NetBsd, Os::OpenBsd] {
        assert_eq!(os.wake_mechanism(), WakeMechanism::Pipe);
    }
}

#[test]
fn this_build_says_whether_it_has_the_backend() {
    let bsd = cfg!(any(
        target_os = "macos",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ));
    assert_eq!(evmux_kqueue::AVAILABLE, bsd);
    assert_eq!(Os::NATIVE.is_some(), bsd);
    if bsd {
        assert!(evmux_kqueue::UNAVAILABLE_REASON.is_empty());
    } else {
        assert_eq!(
            evmux_kqueue::UNAVAILABLE_REASON,
            "kqueue exists only on macOS and the BSDs"
        );
    }
}
