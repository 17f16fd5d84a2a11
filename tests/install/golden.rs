//! What the operator and automation see of the demo install, compared with
//! committed goldens (`SYSINSTALL_BLESS=1` rewrites them): the preflight
//! report of `--dry-run`, the report and the `--events json` stream of a
//! whole install, and the plan afterwards. Paths, hashes, times and byte
//! rates change from run to run and are replaced by placeholders; progress
//! events (their number depends on timing) are left out.

use crate::support::rig::Rig;
use crate::support::{assert_golden, output, require_root, stderr, stdout, sysinstall};

const TOOLS: &[&str] = &[
    "losetup", "partx", "sgdisk", "mke2fs", "e2fsck", "tune2fs", "zstd", "setfacl", "setfattr",
    "python3",
];

/// Replaces what differs between runs.
fn normalize(rig: &Rig, text: &str) -> String {
    let dir = rig.dir.path().to_str().unwrap();
    let dev = rig.lo.path.to_str().unwrap();
    let repo = crate::support::repo();
    let mut out = text
        .replace(dir, "$DIR")
        .replace(repo.to_str().unwrap(), "$REPO");
    // "/dev/loop12p3" and "/dev/loop12" alike, then the kernel name alone
    // (the run directory is per disk).
    out = out.replace(dev, "$DEV");
    let kname = rig.lo.path.file_name().unwrap().to_str().unwrap();
    out = out.replace(&format!("/{kname}/"), "/$KNAME/");
    let mut hex = String::new();
    let mut result = String::new();
    for c in out.chars() {
        if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
            hex.push(c);
            continue;
        }
        flush_hex(&mut result, &mut hex);
        result.push(c);
    }
    flush_hex(&mut result, &mut hex);
    // The journal's start time: "started at unix time N".
    let re_time = |s: &str| -> String {
        s.lines()
            .map(|l| match l.find("unix time ") {
                Some(i) => {
                    let (a, b) = l.split_at(i + "unix time ".len());
                    let rest: String = b.chars().skip_while(char::is_ascii_digit).collect();
                    format!("{a}$TIME{rest}")
                }
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    re_time(&result) + "\n"
}

/// A run of 16 or more lowercase hex digits is a hash or a nonce.
fn flush_hex(out: &mut String, hex: &mut String) {
    if hex.len() >= 16 {
        out.push_str(&format!("$HEX{}", hex.len()));
    } else {
        out.push_str(hex);
    }
    hex.clear();
}

/// The JSON events without progress and without the fields that carry
/// times or rates.
fn events(rig: &Rig, json_lines: &str) -> String {
    let mut out = Vec::new();
    for line in json_lines.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["kind"] == "progress" {
            continue;
        }
        let obj = v.as_object_mut().unwrap();
        for k in ["time", "seq", "duration", "rate"] {
            obj.remove(k);
        }
        out.push(serde_json::to_string(&v).unwrap());
    }
    normalize(rig, &out.join("\n"))
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn the_demo_install_reads_as_before() {
    require_root(TOOLS);
    let rig = Rig::new();

    let o = output(rig.install_cmd().arg("--dry-run").arg(&rig.rootfs));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_golden("install-dry-run.txt", &normalize(&rig, &stderr(&o)));

    let o = output(
        rig.install_cmd()
            .args(["--events", "json"])
            .arg(&rig.rootfs),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_golden("install-report.txt", &normalize(&rig, &stderr(&o)));
    assert_golden("install-events.jsonl", &events(&rig, &stdout(&o)));

    let o = output(
        sysinstall()
            .arg("plan")
            .arg("--layout")
            .arg(&rig.layout)
            .arg("--device")
            .arg(&rig.lo.path),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_golden("install-plan-after.txt", &normalize(&rig, &stdout(&o)));
}
