//! Hostile tarballs: every attempt to write outside the destination is
//! refused with the member's name, and nothing lands outside.

use std::path::Path;

/// A raw ustar member: any name, any link target (the tar crate's builder
/// refuses `..`, which is the point here).
fn member(name: &str, typeflag: u8, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    let b = h.as_mut_bytes();
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::new(typeflag));
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn archive(members: &[Vec<u8>]) -> Vec<u8> {
    let mut ar: Vec<u8> = members.concat();
    ar.resize(ar.len() + 1024, 0);
    ar
}

/// Unpacks `tar` into `root/dest` and returns (exit code, stderr).
fn unpack(root: &Path, tar: &[u8]) -> (i32, String) {
    let file = root.join("evil.tar");
    std::fs::write(&file, tar).unwrap();
    let dest = root.join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let o = crate::support::output(
        crate::support::sysinstall()
            .args(["unpack", "--progress", "plain"])
            .arg(&file)
            .arg(&dest),
    );
    (o.status.code().unwrap_or(-1), crate::support::stderr(&o))
}

/// Everything below `root/outside` (which the archives aim at).
fn outside_listing(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("outside"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn setup() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("outside")).unwrap();
    std::fs::write(d.path().join("outside/secret"), "keep me").unwrap();
    d
}

#[test]
fn dot_dot_is_refused() {
    let d = setup();
    let (code, err) = unpack(
        d.path(),
        &archive(&[
            member("ok", b'0', "", b"fine"),
            member("../outside/pwned", b'0', "", b"x"),
        ]),
    );
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("\"../outside/pwned\"") && err.contains(".."),
        "{err}"
    );
    assert_eq!(outside_listing(d.path()), ["secret"]);
    // The refusal is not silent and the error is one line.
    assert_eq!(
        err.lines().filter(|l| l.contains("error:")).count(),
        1,
        "{err}"
    );
}

#[test]
fn absolute_names_are_stripped_and_said_so() {
    let d = setup();
    let abs = format!("{}/outside/pwned", d.path().display());
    let (code, err) = unpack(d.path(), &archive(&[member(&abs, b'0', "", b"x")]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("removing leading '/'"), "{err}");
    assert_eq!(outside_listing(d.path()), ["secret"]);
    let inside = d.path().join("dest").join(abs.trim_start_matches('/'));
    assert_eq!(std::fs::read(inside).unwrap(), b"x");
}

#[test]
fn writing_through_a_symlink_that_leaves_is_refused() {
    for target in ["../outside", "/tmp", "sub/../../outside"] {
        let d = setup();
        let target = if target == "/tmp" {
            format!("{}/outside", d.path().display())
        } else {
            target.to_owned()
        };
        let tar = archive(&[
            member("sub/", b'5', "", b""),
            member("link", b'2', &target, b""),
            member("link/pwned", b'0', "", b"x"),
        ]);
        let (code, err) = unpack(d.path(), &tar);
        assert_eq!(code, 4, "{target}: {err}");
        assert!(
            err.contains("\"link/pwned\"") && err.contains("leads out of the destination"),
            "{err}"
        );
        assert_eq!(outside_listing(d.path()), ["secret"], "{target}");
    }
}

#[test]
fn symlinks_inside_the_tree_are_followed_like_gnu_tar() {
    let d = setup();
    let tar = archive(&[
        member("usr/lib/", b'5', "", b""),
        member("lib", b'2', "usr/lib", b""),
        member("lib/libc.so", b'0', "", b"elf"),
    ]);
    let (code, err) = unpack(d.path(), &tar);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(d.path().join("dest/usr/lib/libc.so")).unwrap(),
        b"elf"
    );
}

#[test]
fn hard_links_to_outside_are_refused() {
    for (target, why) in [("../outside/secret", ".."), ("esc/secret", "leads out")] {
        let d = setup();
        let out = format!("{}/outside", d.path().display());
        let tar = archive(&[
            member("esc", b'2', &out, b""),
            member("h", b'1', target, b""),
        ]);
        let (code, err) = unpack(d.path(), &tar);
        assert_eq!(code, 4, "{target}: {err}");
        assert!(
            err.contains("\"h\"") && err.contains(why),
            "{target}: {err}"
        );
        // The secret was not linked in (its link count is still 1) nor changed.
        let md = std::fs::metadata(d.path().join("outside/secret")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&md), 1);
        assert_eq!(outside_listing(d.path()), ["secret"]);
    }
}

#[test]
fn a_huge_pax_header_is_refused_not_allocated() {
    let d = setup();
    let mut hdr = member("PaxHeaders/x", b'x', "", b"");
    // Claim 1 GiB of PAX records; the archive itself is tiny.
    let mut h = tar::Header::from_byte_slice(&hdr[..512]).clone();
    h.set_size(1 << 30);
    h.set_cksum();
    hdr[..512].copy_from_slice(h.as_bytes());
    let (code, err) = unpack(d.path(), &archive(&[hdr]));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("claims 1073741824 bytes"), "{err}");
}

fn pax_records(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = k.len() + v.len() + 3;
        let mut len = body + 1;
        while len.to_string().len() + body != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len} {k}={v}\n").as_bytes());
    }
    out
}

#[test]
fn a_10_gib_sparse_file_costs_its_data_not_its_size() {
    let d = setup();
    let real: u64 = 10 << 30;
    let mut data = format!("2\n0\n5\n{}\n4\n", real - 4).into_bytes();
    data.resize(512, 0);
    data.extend_from_slice(b"startend!");
    let pax = pax_records(&[
        ("GNU.sparse.major", "1"),
        ("GNU.sparse.minor", "0"),
        ("GNU.sparse.name", "huge.img"),
        ("GNU.sparse.realsize", &real.to_string()),
    ]);
    let tar = archive(&[
        member("PaxHeaders/huge", b'x', "", &pax),
        member("GNUSparseFile.0/huge.img", b'0', "", &data),
    ]);
    let (code, err) = unpack(d.path(), &tar);
    assert_eq!(code, 0, "{err}");
    let f = d.path().join("dest/huge.img");
    let md = std::fs::metadata(&f).unwrap();
    assert_eq!(md.len(), real);
    // Two small regions written, the rest a hole.
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&md) < 256,
        "{} blocks",
        std::os::unix::fs::MetadataExt::blocks(&md)
    );
    use std::io::{Read, Seek, SeekFrom};
    let mut h = std::fs::File::open(&f).unwrap();
    let mut buf = [0u8; 5];
    h.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"start");
    h.seek(SeekFrom::Start(real - 4)).unwrap();
    let mut tail = [0u8; 4];
    h.read_exact(&mut tail).unwrap();
    assert_eq!(&tail, b"end!");
}

#[test]
fn a_sparse_map_that_lies_is_refused() {
    let d = setup();
    let mut data = b"1\n0\n100\n".to_vec(); // claims 100 bytes, stores 3
    data.resize(512, 0);
    data.extend_from_slice(b"abc");
    let pax = pax_records(&[
        ("GNU.sparse.major", "1"),
        ("GNU.sparse.minor", "0"),
        ("GNU.sparse.realsize", "100"),
    ]);
    let tar = archive(&[
        member("PaxHeaders/x", b'x', "", &pax),
        member("liar", b'0', "", &data),
    ]);
    let (code, err) = unpack(d.path(), &tar);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("sparse map")
            && err.contains("regions hold 100 bytes but the member stores 3"),
        "{err}"
    );
}
