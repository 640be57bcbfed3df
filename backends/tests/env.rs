//! `EVMUX_BACKEND` as the test suite sees it: `.ci/run` runs the tests once
//! per Linux backend with the variable set.

use std::os::fd::AsRawFd;
use std::time::Duration;

use evmux_backends::{AnyBackend, BackendKind, PollerExt, new_backend};
use evmux_interest::{Events, Interest, Mode, Poller, Token};

#[test]
fn auto_honours_evmux_backend() {
    let p = Poller::<AnyBackend>::with_backend(BackendKind::Auto).unwrap();
    let want = match BackendKind::from_env().unwrap() {
        Some(k) if k != BackendKind::Auto => k,
        _ => BackendKind::default_kind(),
    };
    assert_eq!(p.backend_name(), want.name());
}

#[test]
fn the_chosen_backend_delivers_events() {
    let mut p = Poller::<AnyBackend>::with_backend(BackendKind::Auto).unwrap();
    let (r, w) = evmux_sys::fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    evmux_sys::fd::write(&w, b"hi").unwrap();
    let mut evs = Events::with_capacity(8);
    assert_eq!(
        p.get_next_event(&mut evs, Some(Duration::from_secs(5)))
            .unwrap(),
        1
    );
    assert!(evs.as_slice()[0].readable);
    assert_eq!(p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap(), 0);
}

#[cfg(target_os = "linux")]
#[test]
fn every_linux_backend_can_be_made_by_kind() {
    for k in BackendKind::CONCRETE {
        match k {
            BackendKind::Kqueue => {
                let e = new_backend(k).unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
                assert!(e.to_string().contains("kqueue"));
            }
            _ => assert_eq!(new_backend(k).unwrap().name(), k.name()),
        }
    }
}
