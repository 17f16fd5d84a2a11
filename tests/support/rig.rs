//! An install rig on real loop devices: a 4 GiB sparse disk attached to a
//! loop device (the eMMC user area), two 4 MiB image files standing in for
//! boot0/boot1 (the host has no eMMC boot partitions), the demo layout, a
//! synthetic payload from `tests/fixtures/mkbup.py`, and a small rootfs
//! tarball with every kind of entry and that payload inside it. The checks
//! run `tests/qemu/check.py`, which looks at the result with independent
//! tools (sgdisk, e2fsck, a read-only loop mount, its own payload decoder).

#![allow(dead_code)]

use super::{output, repo, sysinstall, LoopDevice};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The board the synthetic payload is for.
pub const TNSPEC: &str = "3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1";
/// Size of the disk image: the demo layout's.
pub const DISK_BYTES: u64 = 4 << 30;
/// Size of each boot image (boot0, boot1 of a TX2).
pub const BOOT_BYTES: u64 = 4 << 20;

/// Everything one install test works on.
pub struct Rig {
    /// Scratch directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The disk image file.
    pub image: PathBuf,
    /// The loop device over it.
    pub lo: LoopDevice,
    /// boot0 and boot1 stand-ins.
    pub boot: [PathBuf; 2],
    /// The layout.
    pub layout: PathBuf,
    /// The layout as JSON (for check.py).
    pub layout_json: PathBuf,
    /// The payload.
    pub bup: PathBuf,
    /// What each boot partition must receive (mkbup.py --manifest).
    pub manifest: PathBuf,
    /// The rootfs tarball.
    pub rootfs: PathBuf,
}

fn run_ok(cmd: &mut Command) -> Output {
    let o = output(cmd);
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Builds the rootfs tree: files, dirs (one sticky), a symlink and a
/// dangling one, a hardlink, char and block devices, a FIFO, setuid, a user
/// xattr, an ACL with a default ACL, a non-root owner, a long path, a UTF-8
/// name, and the payload at opt/ota_package/bl_update_payload.
pub fn make_rootfs(dir: &Path, bup: &Path, tag: &str) -> PathBuf {
    let tree = dir.join(format!("tree-{tag}"));
    let _ = std::fs::remove_dir_all(&tree);
    let sh = format!(
        r#"set -e
t="{tree}"
mkdir -p "$t/etc" "$t/bin" "$t/usr/lib" "$t/dev" "$t/run" "$t/tmp" "$t/opt/ota_package" "$t/var/log/journal" "$t/home/user"
printf 'PRETTY_NAME="sysinstall test rootfs {tag}"\nNAME=test\n' > "$t/etc/os-release"
echo 20200101000000 > "$t/etc/timestamp"
echo {tag} > "$t/etc/sysinstall-fixture"
printf '#!/bin/sh\necho hi\n' > "$t/bin/tool"; chmod 755 "$t/bin/tool"
cp "$t/bin/tool" "$t/bin/su"; chmod 4755 "$t/bin/su"
chmod 1777 "$t/tmp"
ln -s usr/lib "$t/lib"; ln -s /nonexistent/target "$t/etc/dangling"
head -c 1048576 /dev/urandom > "$t/usr/lib/blob"; ln "$t/usr/lib/blob" "$t/usr/lib/blob.link"
mknod "$t/dev/null" c 1 3; mknod "$t/dev/loop9" b 7 9; mkfifo "$t/run/fifo"
echo data > "$t/home/user/file"; chown -R 1000:1000 "$t/home/user"
setfattr -n user.test -v hello "$t/etc/os-release"
setfacl -m u:1000:rwx "$t/var/log/journal"; setfacl -d -m g:1000:rx "$t/var/log/journal"
mkdir -p "$t/deep/$(printf 'd%.0s' $(seq 1 60))/$(printf 'e%.0s' $(seq 1 60))"
echo long > "$t/deep/$(printf 'd%.0s' $(seq 1 60))/$(printf 'e%.0s' $(seq 1 60))/file"
echo utf > "$t/etc/ünïcödé"
cp "{bup}" "$t/opt/ota_package/bl_update_payload"
touch -d '2021-06-01 12:00:00' "$t/etc" "$t/bin"
tar --numeric-owner --xattrs --xattrs-include='*' --acls -cpf - -C "$t" . | zstd -q -T0 > "{out}"
"#,
        tree = tree.display(),
        bup = bup.display(),
        out = dir.join(format!("rootfs-{tag}.tar.zst")).display(),
    );
    run_ok(Command::new("sh").arg("-c").arg(sh));
    let _ = std::fs::remove_dir_all(&tree);
    dir.join(format!("rootfs-{tag}.tar.zst"))
}

/// Builds a payload for `layout` and `tnspec` with its manifest.
pub fn make_bup(dir: &Path, layout: &Path, name: &str, seed: &str) -> (PathBuf, PathBuf) {
    let bup = dir.join(format!("{name}.bup"));
    let manifest = dir.join(format!("{name}.json"));
    run_ok(
        Command::new("python3")
            .arg(repo().join("tests/fixtures/mkbup.py"))
            .arg("--layout")
            .arg(layout)
            .args([
                "--tnspec",
                TNSPEC,
                "--decoy-fab",
                "B00",
                "--seed",
                seed,
                "-o",
            ])
            .arg(&bup)
            .arg("--manifest")
            .arg(&manifest),
    );
    (bup, manifest)
}

impl Rig {
    /// A fresh rig with a blank disk.
    pub fn new() -> Rig {
        let dir = tempfile::Builder::new()
            .prefix("sysinstall-rig")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let image = d.join("disk.img");
        super::sparse_image(&image, DISK_BYTES);
        let boot = [d.join("boot0.img"), d.join("boot1.img")];
        for b in &boot {
            super::sparse_image(b, BOOT_BYTES);
        }
        let layout = repo().join("layouts/demo.xml");
        let layout_json = d.join("layout.json");
        let o = run_ok(
            sysinstall()
                .arg("layout")
                .arg(&layout)
                .args(["--format", "json"]),
        );
        std::fs::write(&layout_json, o.stdout).unwrap();
        let (bup, manifest) = make_bup(d, &layout, "payload", "v1");
        let rootfs = make_rootfs(d, &bup, "v1");
        let lo = LoopDevice::attach(&image);
        Rig {
            dir,
            image,
            lo,
            boot,
            layout,
            layout_json,
            bup,
            manifest,
            rootfs,
        }
    }

    /// Starts over with a blank disk and blank boot images (same fixtures).
    pub fn reset_disks(&mut self) {
        self.unmount_leftovers();
        // Detach the old device before attaching the new one: the kernel may
        // hand out the same number again.
        let placeholder = LoopDevice {
            path: PathBuf::new(),
        };
        drop(std::mem::replace(&mut self.lo, placeholder));
        for (p, n) in [
            (&self.image, DISK_BYTES),
            (&self.boot[0], BOOT_BYTES),
            (&self.boot[1], BOOT_BYTES),
        ] {
            std::fs::remove_file(p).unwrap();
            super::sparse_image(p, n);
        }
        std::mem::forget(std::mem::replace(
            &mut self.lo,
            LoopDevice::attach(&self.image),
        ));
    }

    /// Unmounts what a killed run left mounted under its run directory
    /// (a power cut would have): the next run must find the disk unused.
    pub fn unmount_leftovers(&self) {
        let run = self.dir.path().join("run");
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(run.to_str().unwrap()))
            .collect();
        points.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in points {
            let _ = Command::new("umount").arg(m).output();
        }
    }

    /// `sysinstall install --yes` for this rig, without the ROOTFS argument.
    pub fn install_cmd(&self) -> Command {
        let mut c = self.install_cmd_unconfirmed();
        c.arg("--yes");
        c
    }

    /// `sysinstall install --yes` for this rig, as another board (`--tnspec`).
    pub fn install_cmd_as(&self, tnspec: &str) -> Command {
        let mut c = self.base_cmd();
        c.args(["--tnspec", tnspec, "--progress", "none", "--yes"]);
        c
    }

    fn base_cmd(&self) -> Command {
        let mut c = sysinstall();
        c.env("SYSINSTALL_RUNDIR", self.dir.path().join("run"))
            .arg("install")
            .arg("--layout")
            .arg(&self.layout)
            .arg("--device")
            .arg(&self.lo.path)
            .arg("--boot-device")
            .arg(&self.boot[0])
            .arg("--boot-device")
            .arg(&self.boot[1])
            // The rig's DATA holds nothing anyone needs; the refusal to
            // erase it silently has its own case in refusals.rs.
            .arg("--discard-data");
        c
    }

    /// `sysinstall install` for this rig without `--yes`: it asks, and with
    /// no terminal to answer it refuses.
    pub fn install_cmd_unconfirmed(&self) -> Command {
        let mut c = self.base_cmd();
        c.args(["--tnspec", TNSPEC, "--progress", "none"]);
        c
    }

    /// Runs a full install of the rig's rootfs and asserts it passed.
    pub fn install(&self) -> Output {
        let o = output(self.install_cmd().arg(&self.rootfs));
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("PASS: successful installation of"));
        o
    }

    /// Runs `check.py ARGS` and asserts every check passed.
    pub fn check(&self, args: &[&str]) {
        let _ = Command::new("sync").status();
        let o = output(
            Command::new("python3")
                .arg(repo().join("tests/qemu/check.py"))
                .args(args),
        );
        assert!(
            o.status.success(),
            "check.py {args:?}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    /// The whole install verified from outside: GPT, filesystems, both slot
    /// trees against `tarball`, boot partitions against the manifest.
    pub fn verify_initial(&self, tarball: &Path) {
        let (img, lj) = (Self::s(&self.image), Self::s(&self.layout_json));
        self.check(&["gpt", img, lj]);
        self.check(&["fs", img, lj, "APP", "APP_b", "DATA", "LOGS", "EXTRA"]);
        self.check(&["tree", img, lj, "APP", Self::s(tarball)]);
        self.check(&["tree", img, lj, "APP_b", Self::s(tarball)]);
        self.check(&[
            "boot",
            "--smd",
            "initialize",
            lj,
            Self::s(&self.boot[0]),
            Self::s(&self.boot[1]),
            img,
            Self::s(&self.manifest),
        ]);
    }

    /// An update of slot B verified from outside: slot A still holds the
    /// first install, slot B `tarball`, and only slot B's boot partitions
    /// hold the payload of `manifest` (the slot metadata left to try B).
    pub fn verify_update(&self, tarball: &Path, manifest: &Path) {
        let (img, lj) = (Self::s(&self.image), Self::s(&self.layout_json));
        self.check(&["fs", img, lj, "APP", "APP_b", "DATA", "LOGS", "EXTRA"]);
        self.check(&["tree", img, lj, "APP", Self::s(&self.rootfs)]);
        self.check(&["tree", img, lj, "APP_b", Self::s(tarball)]);
        self.check(&[
            "boot",
            lj,
            Self::s(&self.boot[0]),
            Self::s(&self.boot[1]),
            img,
            Self::s(manifest),
            "--slots",
            "b",
            "--old",
            Self::s(&self.manifest),
            "--smd",
            "update-unbooted",
        ]);
    }

    /// A digest of everything a run could change: the disk image (only its
    /// allocated regions, which is fast on a sparse file) and the boot images.
    pub fn state(&self) -> String {
        let _ = Command::new("sync").status();
        [&self.image, &self.boot[0], &self.boot[1]]
            .iter()
            .map(|p| hash_allocated(p))
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// SHA-256 over the (index, bytes) of every non-zero 1 MiB chunk of a sparse
/// file, reading only the chunks that hold allocated regions: equal digests
/// mean equal contents, whatever extents the host filesystem happens to
/// use for them (its delayed allocation changes those in the background).
pub fn hash_allocated(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    use std::os::fd::AsRawFd;
    const CHUNK: u64 = 1 << 20;
    let mut f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let fd = f.as_raw_fd();
    let mut h = Sha256::new();
    let mut next = 0u64; // the first chunk not hashed yet
    let mut buf = vec![0u8; CHUNK as usize];
    loop {
        let from = (next * CHUNK) as i64;
        if from as u64 >= len {
            break;
        }
        // SAFETY: lseek on an open descriptor we own.
        let data = unsafe { nix::libc::lseek(fd, from, nix::libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { nix::libc::lseek(fd, data, nix::libc::SEEK_HOLE) } as u64;
        let (first, end) = (data as u64 / CHUNK, hole.div_ceil(CHUNK));
        for i in first.max(next)..end {
            let n = (len - i * CHUNK).min(CHUNK) as usize;
            f.seek(SeekFrom::Start(i * CHUNK)).unwrap();
            f.read_exact(&mut buf[..n]).unwrap();
            // Zero blocks a loop device happened to allocate are not content.
            if buf[..n].iter().any(|&b| b != 0) {
                h.update(i.to_le_bytes());
                h.update(&buf[..n]);
            }
        }
        next = end;
    }
    format!("{:x}", h.finalize())
}
