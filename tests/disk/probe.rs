//! The superblock reader against filesystems made by the real mke2fs
//! (on regular files: no root needed).

use std::io::Read;
use std::process::Command;
use sysinstall::probe::{identify, Content, PROBE_BYTES};

#[test]
fn reads_what_mke2fs_wrote() {
    crate::support::require_tools(&["mke2fs"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.img");
    crate::support::sparse_image(&img, 64 << 20);
    let o = crate::support::output(
        Command::new("mke2fs")
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                "APP_b",
                "-U",
                "0d1be901-2222-4333-8444-555555555555",
                "-M",
                "sysinstall:probe",
            ])
            .arg(&img),
    );
    assert!(o.status.success(), "{}", crate::support::stderr(&o));
    let mut head = vec![0u8; PROBE_BYTES];
    std::fs::File::open(&img)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    let Content::Ext(sb) = identify(&head) else {
        panic!("not recognised: {:?}", identify(&head));
    };
    assert_eq!(sb.kind, "ext4");
    assert_eq!(sb.label, "APP_b");
    assert_eq!(sb.last_mounted, "sysinstall:probe");
    assert_eq!(sb.uuid.to_string(), "0D1BE901-2222-4333-8444-555555555555");
    assert_eq!(sb.size_bytes, 64 << 20);
}
