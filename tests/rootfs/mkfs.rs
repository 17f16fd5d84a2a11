//! mke2fs and e2fsck through `sys::mkfs`, on regular image files (no root
//! needed: mke2fs formats a file as well as a partition).

use std::process::Command;
use sysinstall::sys::mkfs::{e2fsck_preen, mkfs_ext4, Ext4Options, FsckOutcome};

fn dumpe2fs(img: &std::path::Path) -> String {
    let o = crate::support::output(Command::new("dumpe2fs").arg("-h").arg(img));
    assert!(
        o.status.success(),
        "dumpe2fs: {}",
        crate::support::stderr(&o)
    );
    crate::support::stdout(&o)
}

fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .map(|v| v.trim_start_matches(':').trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{name} missing in dumpe2fs output"))
}

#[test]
fn partitions_get_their_label_and_inode_ratio() {
    crate::support::require_tools(&["mke2fs", "dumpe2fs"]);
    let dir = tempfile::tempdir().unwrap();
    let mut inodes = Vec::new();
    for name in ["APP_b", "LOGS"] {
        let img = dir.path().join(format!("{name}.img"));
        crate::support::sparse_image(&img, 512 << 20);
        mkfs_ext4(&img, &Ext4Options::for_partition(name)).unwrap();
        let info = dumpe2fs(&img);
        assert_eq!(field(&info, "Filesystem volume name"), name);
        assert!(
            field(&info, "Filesystem features").contains("extent"),
            "not ext4"
        );
        inodes.push(field(&info, "Inode count").parse::<u64>().unwrap());
        assert_eq!(e2fsck_preen(&img).unwrap(), FsckOutcome::Clean);
    }
    // -i 4096 on APP_b: 512 MiB / 4096 = 131072 inodes; LOGS gets the default 16384 bytes per inode.
    assert_eq!(inodes[0], 131072);
    assert_eq!(inodes[1], 32768);
    assert!(inodes[1] < inodes[0], "{inodes:?}");
}

#[test]
fn failures_carry_the_command_and_its_stderr() {
    crate::support::require_tools(&["mke2fs"]);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-device");
    let err = format!(
        "{:#}",
        mkfs_ext4(&missing, &Ext4Options::for_partition("DATA")).unwrap_err()
    );
    assert!(err.contains("formatting DATA"), "{err}");
    assert!(
        err.contains("mke2fs -t ext4 -F -q -L DATA -i 4096"),
        "{err}"
    );
    assert!(err.contains("exit status"), "{err}");
    assert!(err.contains("no-such-device"), "{err}");

    // A file that holds no filesystem: e2fsck fails (exit 8) and says why.
    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, vec![0u8; 1 << 20]).unwrap();
    let err = format!("{:#}", e2fsck_preen(&junk).unwrap_err());
    assert!(err.contains("e2fsck -p"), "{err}");
    assert!(err.to_lowercase().contains("super-block"), "{err}");
}
