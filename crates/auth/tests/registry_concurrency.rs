//! Concurrent changes to one data directory through separate registries,
//! as a running server and the `occoder clients` command make them.

use occoder_auth::{ClientRegistry, Role};

#[test]
fn concurrent_adds_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let path = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let registry = ClientRegistry::open(&path).unwrap();
                for i in 0..3 {
                    registry.add(&format!("client {thread}-{i}"), Role::Public).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }

    let clients = ClientRegistry::open(dir.path()).unwrap().list().unwrap();

    assert_eq!(clients.len(), 12);
}
