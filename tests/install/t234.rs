//! Orin (T234) installs on a loop device, up to the last check before the
//! first write: the plan (kernel partitions, ESP, variable order) and every
//! refusal, each with the disk and the variable store unchanged.
//!
//! The board is a fake sysroot: an efivarfs directory holding variables in
//! efivarfs's file format (4 bytes of attributes, then the data) and, where
//! a case needs one, an ESRT tree. That is a mock of the one part that
//! cannot exist here (the firmware of an Orin); the disk, the layout, the
//! payloads and the capsules are real files parsed by the real code. The
//! whole install, ESP and variables included, runs under real UEFI firmware
//! in the qemu UEFI tier (`tests/qemu/uefi.sh`): this host's kernel has no
//! vfat to mount the ESP.

use crate::support::rig::make_rootfs;
use crate::support::{output, require_root, sparse_image, stderr, stdout, LoopDevice};
use std::path::{Path, PathBuf};
use sysinstall::bup::payload::{Builder, PayloadFormat};
use sysinstall::uefi::capsule;
use sysinstall::uefi::vars::{Var, VarValue, TEGRA_FMP_IMAGE_TYPE};
use sysinstall::uefi::version::FwVersion;

const TOOLS: &[&str] = &[
    "losetup",
    "mke2fs",
    "e2fsck",
    "tune2fs",
    "mkfs.vfat",
    "setfattr",
    "setfacl",
];
/// The AGX Orin devkit as its firmware names it, and as meta-tegra's
/// payload entries name it.
const SPEC: &str = "3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-";
const COMPAT: &str = "3701-300-0000--1--jetson-agx-orin-devkit-";
const ENTRY: &str = "3701-300-0000--1--jetson-agx-orin-devkit-";
const NANO_ENTRY: &str = "3767-300-0005--1--jetson-orin-nano-devkit-";
const LAYOUT: &str = "r35.3.1-flash_t234_qspi_sdmmc_rootfs_ab.xml";
/// The layout's user device: 124321792 sectors of 512 bytes.
const DISK_BYTES: u64 = 124_321_792 * 512;

fn v3() -> Builder {
    let mut b = Builder::new();
    b.format = PayloadFormat::V3;
    b.version = 0x0103_0622;
    b
}

fn kernel_payload(spec: &str, with_dtb: bool) -> Vec<u8> {
    let mut b = v3().entry("kernel", &[0x4b; 70_000], 0, spec);
    if with_dtb {
        b = b.entry("kernel-dtb", &[0x44; 3000], 0, spec);
    }
    b.build()
}

fn firmware_payload(spec: &str) -> Vec<u8> {
    let mut b = v3();
    // Every image any release requires: eks, BCT and pva-fw come and go.
    let all = sysinstall::bup::t234::fmp_required(None)
        .into_iter()
        .chain(["pva-fw", "BCT", "eks"]);
    for name in all {
        b = b.entry(name, name.as_bytes(), 0, spec);
    }
    b.build()
}

fn capsule_of(payload: &[u8], image_type: sysinstall::guid::Guid, version: FwVersion) -> Vec<u8> {
    let mut c = capsule::Builder::new(image_type, version.0);
    c.cert = Some(b"not a real PKCS7 signature".to_vec());
    c.build(payload)
}

/// A fake `/` with efivarfs (and optionally an ESRT) for the board.
fn sysroot(dir: &Path, esrt: Option<(FwVersion, FwVersion)>) -> PathBuf {
    let root = dir.join("sysroot");
    let vars = root.join("sys/firmware/efi/efivars");
    std::fs::create_dir_all(&vars).unwrap();
    link_host(&root);
    let put =
        |var: Var, v: VarValue| std::fs::write(vars.join(var.file_name()), v.encode()).unwrap();
    put(
        Var::TegraPlatformSpec,
        VarValue::nv(SPEC.as_bytes().to_vec()),
    );
    put(
        Var::TegraPlatformCompatSpec,
        VarValue::nv(COMPAT.as_bytes().to_vec()),
    );
    put(Var::BootChainFwCurrent, VarValue::nv_u32(0));
    // Stale states an install must clear.
    put(Var::BootChainFwStatus, VarValue::nv_u32(3));
    put(
        Var::rootfs_status(sysinstall::bup::board::Slot::B),
        VarValue::nv_u32(0xff),
    );
    if let Some((version, lsv)) = esrt {
        let e = root.join("sys/firmware/efi/esrt/entries/entry0");
        std::fs::create_dir_all(&e).unwrap();
        for (f, v) in [
            (
                "fw_class",
                format!(
                    "{}\n",
                    TEGRA_FMP_IMAGE_TYPE.to_string().to_ascii_lowercase()
                ),
            ),
            ("fw_type", "1\n".into()),
            ("fw_version", format!("{}\n", version.0)),
            ("lowest_supported_fw_version", format!("{}\n", lsv.0)),
            ("capsule_flags", "0x0\n".into()),
            ("last_attempt_version", "0\n".into()),
            ("last_attempt_status", "0\n".into()),
        ] {
            std::fs::write(e.join(f), v).unwrap();
        }
    }
    root
}

/// The host's /proc, /dev and /sys (but its firmware) in a fake root: the
/// disk checks (holders, mounts, swaps) look at the real system.
fn link_host(root: &Path) {
    std::fs::create_dir_all(root.join("sys")).unwrap();
    for top in ["proc", "dev"] {
        std::os::unix::fs::symlink(format!("/{top}"), root.join(top)).unwrap();
    }
    for e in std::fs::read_dir("/sys").unwrap() {
        let name = e.unwrap().file_name();
        if name != "firmware" {
            std::os::unix::fs::symlink(Path::new("/sys").join(&name), root.join("sys").join(&name))
                .unwrap();
        }
    }
}

/// Every variable file and its bytes.
fn store(root: &Path) -> Vec<(String, Vec<u8>)> {
    let vars = root.join("sys/firmware/efi/efivars");
    let Ok(rd) = std::fs::read_dir(&vars) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = rd
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

struct Orin {
    dir: tempfile::TempDir,
    lo: LoopDevice,
    image: PathBuf,
    rootfs: PathBuf,
    kernel: PathBuf,
    capsule: PathBuf,
    launcher: PathBuf,
}

impl Orin {
    fn new() -> Orin {
        let dir = tempfile::Builder::new()
            .prefix("sysinstall-orin")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let image = d.join("disk.img");
        sparse_image(&image, DISK_BYTES);
        let write = |name: &str, bytes: &[u8]| {
            let p = d.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let kernel = write("kernel_only_payload", &kernel_payload(ENTRY, true));
        let capsule = write(
            "tegra-bl.cap",
            &capsule_of(
                &firmware_payload(ENTRY),
                TEGRA_FMP_IMAGE_TYPE,
                FwVersion::new(36, 4, 0),
            ),
        );
        let launcher = write("BOOTAA64.efi", b"MZ not really L4TLauncher");
        // The rig's rootfs carries a T186 payload path; on an Orin it is
        // not looked at, so any bytes do.
        let unused = write("unused-t186-payload", b"not read on T234");
        let rootfs = make_rootfs(d, &unused, "orin");
        let lo = LoopDevice::attach(&image);
        Orin {
            dir,
            lo,
            image,
            rootfs,
            kernel,
            capsule,
            launcher,
        }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    fn run(&self, root: &Path, args: &[&str]) -> std::process::Output {
        let layout = crate::support::data_dir()
            .join("flash-layouts")
            .join(LAYOUT);
        let mut cmd = crate::support::sysinstall();
        cmd.env("SYSINSTALL_RUNDIR", self.dir.path().join("run"))
            .arg("install")
            .arg("--layout")
            .arg(&layout)
            .args([
                "--set",
                "APPSIZE=536870912",
                "--yes",
                "--events",
                "json",
                "--events-fd",
                "2",
            ])
            .arg("--device")
            .arg(&self.lo.path)
            .arg("--sysroot")
            .arg(root);
        let given = |flag: &str| args.iter().any(|a| a.starts_with(flag));
        if !given("--bup") {
            cmd.arg("--bup").arg(&self.kernel);
        }
        // `--omit-*`: the test's own, for "not given at all".
        if !given("--capsule") && !given("--no-capsule") && !given("--omit-capsule") {
            cmd.arg("--capsule").arg(&self.capsule);
        }
        if !given("--launcher") && !given("--omit-launcher") {
            cmd.arg("--launcher").arg(&self.launcher);
        }
        cmd.args(args.iter().filter(|a| !a.starts_with("--omit-")));
        if !given("--image=APP=") && !given("--omit-rootfs") {
            cmd.arg(&self.rootfs);
        }
        output(&mut cmd)
    }

    fn disk(&self) -> String {
        crate::support::rig::hash_allocated(&self.image)
    }
}

fn events(o: &std::process::Output) -> Vec<serde_json::Value> {
    stderr(o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn the_plan_clears_stale_state_then_requests_the_capsule() {
    require_root(TOOLS);
    let o = Orin::new();
    let root = sysroot(o.dir.path(), None);
    let before = (o.disk(), store(&root));
    let out = o.run(&root, &["--dry-run"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let ev = events(&out);
    let plan = ev
        .iter()
        .find(|e| e["kind"] == "plan")
        .expect("a plan event");
    assert_eq!(plan["mode"], "initial");
    assert_eq!(
        plan["boot_devices"],
        serde_json::json!([]),
        "the QSPI is never a target"
    );
    let vars: Vec<&str> = plan["uefi_variables"]
        .as_array()
        .expect("uefi_variables")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        vars,
        [
            "delete BootChainFwStatus",
            "delete BootChainFwNext",
            "set RootfsStatusSlotA = 0x0",
            "set RootfsStatusSlotB = 0x0",
            // The board's specs are set: nothing to create.
            "set OsIndications = 0x4",
        ]
    );
    let report = stderr(&out);
    for want in [
        "A_kernel, A_kernel-dtb, B_kernel, B_kernel-dtb",
        "EFI/BOOT/BOOTAA64.efi",
        "EFI/UpdateCapsule/TEGRA_BL.Cap",
    ] {
        assert!(report.contains(want), "{want}: {report}");
    }
    assert_eq!(
        (o.disk(), store(&root)),
        before,
        "a dry run changed something"
    );

    // Without a capsule the switch is a BootChainFwNext request, and a
    // request for the chain that runs is none at all.
    let out = o.run(&root, &["--dry-run", "--no-capsule"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = events(&out)
        .into_iter()
        .find(|e| e["kind"] == "plan")
        .unwrap();
    let vars = plan["uefi_variables"].to_string();
    assert!(
        !vars.contains("OsIndications") && !vars.contains("set BootChainFwNext"),
        "{vars}"
    );
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn an_ext4_image_for_the_slots_passes_the_orin_preflight() {
    require_root(TOOLS);
    let o = Orin::new();
    let root = sysroot(o.dir.path(), None);
    let image = o.dir.path().join("rootfs.ext4");
    let mk = output(
        std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", "APP"])
            .arg(&image)
            .arg("64M"),
    );
    assert!(mk.status.success(), "{}", stderr(&mk));
    let before = (o.disk(), store(&root));
    // The kernel payload from --bup and the capsule are given (Orin::run),
    // as an image carries no payload the preflight could read.
    let out = o.run(
        &root,
        &["--dry-run", &format!("--image=APP={}", image.display())],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let report = stderr(&out);
    assert!(report.contains("raw image (none)"), "{report}");
    let plan = events(&out)
        .into_iter()
        .find(|e| e["kind"] == "plan")
        .unwrap();
    assert_eq!(plan["mode"], "initial");
    assert!(
        plan["uefi_variables"].to_string().contains("OsIndications"),
        "{plan}"
    );
    assert_eq!(
        (o.disk(), store(&root)),
        before,
        "a dry run changed something"
    );
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn orin_refusals_leave_the_disk_and_the_variables_unchanged() {
    require_root(TOOLS);
    let o = Orin::new();
    let d = o.dir.path();
    let fw = |spec: &str| firmware_payload(spec);
    let nano_kernel = o.file("nano-kernel", &kernel_payload(NANO_ENTRY, true));
    let no_dtb = o.file("no-dtb", &kernel_payload(ENTRY, false));
    let bare_fw = o.file("bare-fw", &fw(ENTRY));
    let wrong_guid = o.file(
        "wrong-guid.cap",
        &capsule_of(
            &fw(ENTRY),
            sysinstall::guid::Guid::from_fields(1, 2, 3, [4; 8]),
            FwVersion::new(36, 4, 0),
        ),
    );
    let nano_cap = o.file(
        "nano.cap",
        &capsule_of(
            &fw(NANO_ENTRY),
            TEGRA_FMP_IMAGE_TYPE,
            FwVersion::new(36, 4, 0),
        ),
    );
    let old_cap = o.file(
        "old.cap",
        &capsule_of(&fw(ENTRY), TEGRA_FMP_IMAGE_TYPE, FwVersion::new(35, 4, 1)),
    );
    let plain = sysroot(&d.join("plain"), None);
    let ratchet = sysroot(
        &d.join("ratchet"),
        Some((FwVersion::new(35, 5, 0), FwVersion::new(35, 5, 0))),
    );
    let r35_3 = sysroot(
        &d.join("r35.3"),
        Some((FwVersion::new(35, 3, 1), FwVersion::new(0, 0, 0))),
    );
    let no_efi = d.join("no-efi");
    link_host(&no_efi);
    let cases: Vec<(&str, &Path, Vec<&str>, &str, &str)> = vec![
        (
            "no efivarfs",
            &no_efi,
            vec![],
            "mode_refused",
            "is not mounted",
        ),
        (
            "kernel payload for another board",
            &plain,
            vec!["--bup", &nano_kernel],
            "payload_mismatch",
            "kernel",
        ),
        (
            "no kernel-dtb entry",
            &plain,
            vec!["--bup", &no_dtb],
            "payload_mismatch",
            "kernel-dtb",
        ),
        (
            "a firmware payload as the kernel payload",
            &plain,
            vec!["--bup", &bare_fw],
            "payload_mismatch",
            "firmware payload",
        ),
        (
            "a bare payload as the capsule",
            &plain,
            vec!["--capsule", &bare_fw],
            "payload_mismatch",
            "not a UEFI capsule",
        ),
        (
            "capsule with another image type",
            &plain,
            vec!["--capsule", &wrong_guid],
            "payload_mismatch",
            "wrong-guid.cap",
        ),
        (
            "capsule for another board",
            &plain,
            vec!["--capsule", &nano_cap],
            "payload_mismatch",
            "nano.cap",
        ),
        (
            "capsule below the firmware's lowest supported version",
            &ratchet,
            vec!["--capsule", &old_cap],
            "payload_mismatch",
            "old.cap",
        ),
        (
            "R36 capsule over R35.3 firmware (the QSPI layout moved)",
            &r35_3,
            vec![],
            "payload_mismatch",
            "35.5",
        ),
        (
            "capsule file missing",
            &plain,
            vec!["--capsule", "/nonexistent/tegra-bl.cap"],
            "input_missing",
            "tegra-bl.cap",
        ),
        (
            "no capsule and no --no-capsule",
            &plain,
            vec!["--omit-capsule"],
            "payload_mismatch",
            "--no-capsule",
        ),
        (
            "no launcher for the new ESP",
            &plain,
            vec!["--omit-launcher"],
            "payload_mismatch",
            "--launcher",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, root, args, code, says) in &cases {
        let before = (o.disk(), store(root));
        let out = o.run(root, args);
        let ev = events(&out);
        let summary = ev.last().cloned().unwrap_or_default();
        let fail = stdout(&out)
            .lines()
            .find(|l| l.starts_with("FAIL: "))
            .unwrap_or_default()
            .to_owned();
        if out.status.code() != Some(3) {
            wrong.push(format!(
                "{name}: exit {:?}: {}{}",
                out.status.code(),
                stdout(&out),
                stderr(&out)
            ));
        } else if summary["code"] != *code {
            wrong.push(format!(
                "{name}: code {}, want {code}: {fail}",
                summary["code"]
            ));
        } else if !fail.contains(says) {
            wrong.push(format!("{name}: {fail:?} does not say {says:?}"));
        }
        if (o.disk(), store(root)) != before {
            wrong.push(format!("{name}: the disk or the variable store changed"));
        }
    }
    // The layout in place but an ESP that holds no FAT: an update, which
    // keeps the ESP, is refused before it writes a slot.
    let layout = crate::support::data_dir()
        .join("flash-layouts")
        .join(LAYOUT);
    let p = output(
        crate::support::sysinstall()
            .args([
                "partition",
                "--yes",
                "--set",
                "APPSIZE=536870912",
                "--layout",
            ])
            .arg(&layout)
            .arg("--device")
            .arg(&o.lo.path),
    );
    assert_eq!(p.status.code(), Some(0), "{}", stderr(&p));
    let before = (o.disk(), store(&plain));
    let out = o.run(&plain, &["--mode", "update"]);
    let fail = stdout(&out);
    if out.status.code() != Some(3) || !fail.contains("not a FAT filesystem") {
        wrong.push(format!(
            "update over an ESP without FAT: {fail}{}",
            stderr(&out)
        ));
    }
    if (o.disk(), store(&plain)) != before {
        wrong.push("update over an ESP without FAT: the disk or the variable store changed".into());
    }
    eprintln!("{} Orin refusal cases", cases.len() + 1);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
